"""The files of a run folder, named once: every command that writes or reads a run folder uses these names."""

FINAL_CHECKPOINT = "model.safetensors"  # the finished run's model (the one `eval` scores)
LAST_CHECKPOINT = "checkpoint_last.safetensors"  # the periodic checkpoint a resumed run continues from
METRICS_FILE = "metrics.jsonl"  # one strict-JSON line per logged step
SNAPSHOT_DIR = "snapshots"  # adapt.snapshot_every: weights of every N-th step, for the adaptation curve only
CONFIG_FILE = "config.yaml"  # the full config the run was started with
EVAL_FILE = "eval.json"  # `stpl eval --out`: the scores
