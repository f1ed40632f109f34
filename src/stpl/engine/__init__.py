"""The training engine: the method contract (method.py), the one loop and its step (loop.py), checkpoints,
evaluation, and supervised training (supervised.py). Adaptation methods build on it; it knows none of them."""

from stpl.engine.loop import LoopSettings, run_loop, train_step
from stpl.engine.method import Method, parameter_groups

__all__ = ["LoopSettings", "Method", "parameter_groups", "run_loop", "train_step"]
