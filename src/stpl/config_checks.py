"""Checks across config values that a type alone cannot express (ranges, keys that must be set together)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from stpl.errors import StplError

if TYPE_CHECKING:  # the schema imports this module, so only for type hints
    from stpl.config import AdaptConfig, Config
    from stpl.config_methods import UdaConfig


# the most torch intra-op threads `threads` may ask for: above the cores of any machine stpl runs on, below the
# counts at which thread creation fails (100000 ended in a segmentation fault with nothing said)
MAX_THREADS = 1024


def validate(config: Config, method_names: Sequence[str]) -> None:
    """Checks across values that a type alone cannot express; `method_names`: the known adaptation methods."""
    if config.adapt.method not in method_names:
        raise StplError(f"config key 'adapt.method': {config.adapt.method!r} is not one of {list(method_names)}")
    unknown = [name for name in config.adapt.auto_candidates if name not in method_names]
    if unknown or not config.adapt.auto_candidates:
        raise StplError(
            f"config key 'adapt.auto_candidates': {list(config.adapt.auto_candidates)} must name one or more of "
            f"{list(method_names)}"
        )
    if not 0 <= config.threads <= MAX_THREADS:  # far more threads than cores crashes OpenMP without a word
        raise StplError(
            f"config key 'threads' must be 0 (torch's default) or a number of threads up to {MAX_THREADS}, "
            f"got {config.threads}"
        )
    if config.adapt.online.guard_window < 2:
        raise StplError(f"config key 'adapt.online.guard_window' must be >= 2, got {config.adapt.online.guard_window}")
    if not config.adapt.online.guard_margin >= 0:
        raise StplError(f"config key 'adapt.online.guard_margin' must be >= 0, got {config.adapt.online.guard_margin}")
    if not config.adapt.auto_margin >= 0:
        raise StplError(f"config key 'adapt.auto_margin' must be >= 0, got {config.adapt.auto_margin}")
    positive = {
        "data.height": config.data.height,
        "data.width": config.data.width,
        "data.frame_gap": config.data.frame_gap,
        "train.batch_size": config.train.batch_size,
        "adapt.batch_size": config.adapt.batch_size,
        "eval.batch_size": config.eval.batch_size,
        "adapt.anchors_per_class": config.adapt.anchors_per_class,
        "model.feature_channels": config.model.feature_channels,
        "model.projection_dim": config.model.projection_dim,
    }
    for key, value in positive.items():
        if value <= 0:
            raise StplError(f"config key '{key}' must be positive, got {value}")
    at_least_one = {
        "train.log_every": config.train.log_every,
        "train.checkpoint_every": config.train.checkpoint_every,
        "adapt.log_every": config.adapt.log_every,
        "adapt.checkpoint_every": config.adapt.checkpoint_every,
        "data.synthetic.source_clips": config.data.synthetic.source_clips,
        "data.synthetic.adapt_clips": config.data.synthetic.adapt_clips,
        "data.synthetic.eval_clips": config.data.synthetic.eval_clips,
        "flow.workers": config.flow.workers,
    }
    for key, value in at_least_one.items():
        if value < 1:
            raise StplError(f"config key '{key}' must be at least 1, got {value}")
    not_negative = {
        "seed": config.seed,  # numpy's generators refuse negative seeds
        "data.synthetic.seed": config.data.synthetic.seed,
        "train.checkpoint_minutes": config.train.checkpoint_minutes,
        "adapt.checkpoint_minutes": config.adapt.checkpoint_minutes,
        "data.loader_workers": config.data.loader_workers,
        "train.iterations": config.train.iterations,
        "train.oracle_iterations": config.train.oracle_iterations,
        "train.warmup_steps": config.train.warmup_steps,
        "train.class_weight_power": config.train.class_weight_power,
        "train.photometric": config.train.photometric,
        "adapt.lambda_anchor": config.adapt.lambda_anchor,
        "adapt.iterations": config.adapt.iterations,
        "adapt.snapshot_every": config.adapt.snapshot_every,
        "eval.label_height": config.eval.label_height,
        "eval.label_width": config.eval.label_width,
    }
    not_negative |= {
        "train.backbone_lr_scale": config.train.backbone_lr_scale,
        "train.weight_decay": config.train.weight_decay,
        "adapt.backbone_lr_scale": config.adapt.backbone_lr_scale,
        "adapt.weight_decay": config.adapt.weight_decay,
        "adapt.lambda_contrast": config.adapt.lambda_contrast,
        "adapt.lambda_pl": config.adapt.lambda_pl,
        "adapt.later_error_limit": config.adapt.later_error_limit,
        "adapt.student_augmentation": config.adapt.student_augmentation,
        "model.aux_weight": config.model.aux_weight,
        "adapt.ur.lambda_pl": config.adapt.ur.lambda_pl,
        "adapt.ur.lambda_entropy": config.adapt.ur.lambda_entropy,
        "adapt.ur.lambda_consistency": config.adapt.ur.lambda_consistency,
        "adapt.hcl.lambda_instance": config.adapt.hcl.lambda_instance,
        "adapt.hcl.lambda_category": config.adapt.hcl.lambda_category,
        "adapt.tps.lambda_tps": config.adapt.tps.lambda_tps,
        "adapt.tps.augmentation": config.adapt.tps.augmentation,
        "adapt.davsn.lambda_itcr": config.adapt.davsn.lambda_itcr,
        "adapt.uda.lambda_source": config.adapt.uda.lambda_source,
        "adapt.uda.fda_lambda_entropy": config.adapt.uda.fda_lambda_entropy,
        "adapt.uda.pixmatch_lambda": config.adapt.uda.pixmatch_lambda,
        "adapt.uda.rda_lambda_target": config.adapt.uda.rda_lambda_target,
        "adapt.uda.lambda_adversarial": config.adapt.uda.lambda_adversarial,
        "adapt.uda.davsn_lambda_itcr": config.adapt.uda.davsn_lambda_itcr,
    }
    for key, value in not_negative.items():
        if value < 0:
            raise StplError(f"config key '{key}' must not be negative, got {value}")
    if (config.eval.label_height > 0) != (config.eval.label_width > 0):
        raise StplError("config keys 'eval.label_height' and 'eval.label_width' must be set together")
    if not 0.0 <= config.adapt.threshold <= 1.0:
        raise StplError(f"config key 'adapt.threshold' must be in [0, 1], got {config.adapt.threshold}")
    if not (config.device == "cpu" or config.device == "cuda" or config.device.startswith(("cuda:", "mps"))):
        raise StplError(f"config key 'device': '{config.device}' is not cpu, cuda, cuda:N or mps")
    for key, value in {"train.lr": config.train.lr, "adapt.lr": config.adapt.lr}.items():
        if value <= 0:
            raise StplError(f"config key '{key}' must be positive, got {value}")
    for key, value in {"train.momentum": config.train.momentum, "adapt.momentum": config.adapt.momentum}.items():
        if not 0.0 <= value < 1.0:
            raise StplError(f"config key '{key}' must be in [0, 1), got {value}")
    online = config.adapt.online
    if min(online.window, online.steps, online.every) < 1:
        raise StplError("config keys 'adapt.online.window', 'steps' and 'every' must be at least 1")
    if not (online.fps >= 0 and math.isfinite(online.fps)):
        raise StplError(f"config key 'adapt.online.fps' must be 0 (no target) or a frame rate, got {online.fps}")
    shares = {"restore_probability": online.restore_probability, "norm_momentum": online.norm_momentum,
              "norm_source_prior": online.norm_source_prior, "frame_statistics": online.frame_statistics}  # fmt: skip
    for key, value in shares.items():
        if not 0.0 <= value <= 1.0:
            raise StplError(f"config key 'adapt.online.{key}' must be in [0, 1], got {value}")
    if config.adapt.ur.decoder_lr_scale <= 0:
        raise StplError("config key 'adapt.ur.decoder_lr_scale' must be positive")
    for key, amp in {"train.amp": config.train.amp, "adapt.amp": config.adapt.amp}.items():
        if amp == "fp16" and not config.device.startswith("cuda"):
            raise StplError(f"config key '{key}': fp16 needs device cuda (on CPU use bf16)")
    if config.adapt.temperature <= 0:
        raise StplError(f"config key 'adapt.temperature' must be positive, got {config.adapt.temperature}")
    if not 0.0 < config.adapt.class_fraction <= 1.0:
        raise StplError("config key 'adapt.class_fraction' must be in (0, 1]")
    if not 0.0 < config.flow.scale <= 1.0:
        raise StplError(f"config key 'flow.scale' must be in (0, 1], got {config.flow.scale}")
    if not 0.0 <= config.adapt.norm_source_weight <= 1.0:
        raise StplError("config key 'adapt.norm_source_weight' must be in [0, 1]")
    if not 0.0 <= config.adapt.ema_momentum < 1.0:
        raise StplError("config key 'adapt.ema_momentum' must be in [0, 1)")
    if config.data.read_workers <= 0 or config.data.viper.subsample <= 0:
        raise StplError("config keys 'data.read_workers' and 'data.viper.subsample' must be positive")
    if not 0.0 <= config.data.synthia_seq.crop_bottom < 1.0:
        raise StplError("config key 'data.synthia_seq.crop_bottom' must be in [0, 1)")
    scales = config.train.scale_range
    if scales and (len(scales) != 2 or not 0.0 < scales[0] <= scales[1]):
        raise StplError("config key 'train.scale_range' must be [] or [low, high] with 0 < low <= high")
    student_scales = config.adapt.student_scale_range
    if student_scales and (len(student_scales) != 2 or not 0.0 < student_scales[0] <= student_scales[1]):
        raise StplError("config key 'adapt.student_scale_range' must be [] or [low, high] with 0 < low <= high")
    strengths = {"train.photometric": config.train.photometric,
                 "adapt.student_augmentation": config.adapt.student_augmentation,
                 "adapt.tps.augmentation": config.adapt.tps.augmentation}  # fmt: skip
    for key, strength in strengths.items():  # above 2 the saturation factor 1 - 0.5 * strength turns negative
        if strength > 2.0:
            raise StplError(f"config key '{key}' must be in [0, 2] (data/photometric.py), got {strength}")
    if not 0.0 <= config.adapt.student_cutout < 1.0:
        raise StplError("config key 'adapt.student_cutout' must be in [0, 1)")
    _validate_baselines(config.adapt)
    if config.model.warp_error_limit < 0:
        raise StplError("config key 'model.warp_error_limit' must be >= 0 (0 = off)")
    if not 0.0 <= config.data.synthetic.temporal_nuisance <= 1.0:
        raise StplError("config key 'data.synthetic.temporal_nuisance' must be in [0, 1]")
    if config.data.synthetic.num_frames <= config.data.frame_gap:
        raise StplError("config key 'data.synthetic.num_frames' must exceed 'data.frame_gap'")


def _validate_baselines(adapt: AdaptConfig) -> None:
    hcl, tps, ur = adapt.hcl, adapt.tps, adapt.ur
    if not 0.0 <= hcl.momentum < 1.0 or hcl.temperature <= 0 or hcl.pixels < 2:
        raise StplError("config keys 'adapt.hcl.*': momentum in [0, 1), temperature > 0, pixels >= 2")
    if len(tps.scale_range) != 2 or not 0.0 < tps.scale_range[0] <= tps.scale_range[1]:
        raise StplError("config key 'adapt.tps.scale_range' must be [low, high] with 0 < low <= high")
    _validate_uda(adapt.uda)
    cotta = adapt.cotta
    if not 0.0 <= cotta.ema_momentum < 1.0 or not 0.0 <= cotta.restore_probability <= 1.0:
        raise StplError("config keys 'adapt.cotta.ema_momentum' must be in [0, 1), 'restore_probability' in [0, 1]")
    if not cotta.scales or min(cotta.scales) <= 0:
        raise StplError("config key 'adapt.cotta.scales' must list positive scales")
    if not 0.0 < adapt.norm_ema_momentum <= 1.0:
        raise StplError("config key 'adapt.norm_ema_momentum' must be in (0, 1]")
    if ur.decoders < 1 or not 0.0 <= ur.dropout < 1.0:
        raise StplError("config keys 'adapt.ur.decoders' must be >= 1 and 'adapt.ur.dropout' in [0, 1)")
    if not 0.0 < ur.class_fraction <= 1.0:
        raise StplError("config key 'adapt.ur.class_fraction' must be in (0, 1]")


def _validate_uda(uda: UdaConfig) -> None:
    if not 0.0 <= uda.fda_beta < 0.5 or uda.fda_eta <= 0:
        raise StplError("config keys 'adapt.uda.fda_beta' must be in [0, 0.5) and 'adapt.uda.fda_eta' positive")
    scales = uda.pixmatch_scale_range
    if scales and (len(scales) != 2 or not 0.0 < scales[0] <= scales[1]):
        raise StplError("config key 'adapt.uda.pixmatch_scale_range' must be [] or [low, high], 0 < low <= high")
    if not 0.0 <= uda.pixmatch_augmentation <= 2.0:
        raise StplError("config key 'adapt.uda.pixmatch_augmentation' must be in [0, 2] (data/photometric.py)")
    low, high = (*uda.rda_semantic_bands, -1, -1)[:2]
    if uda.rda_bands < 2 or len(uda.rda_semantic_bands) != 2 or not 0 <= low <= high < uda.rda_bands:
        raise StplError(
            "config keys 'adapt.uda.rda_bands' (>= 2) and 'adapt.uda.rda_semantic_bands' ([first, last] band kept, "
            "0 <= first <= last < rda_bands) do not fit together"
        )
    if not 0.0 < uda.rda_share <= 1.0:
        raise StplError("config key 'adapt.uda.rda_share' must be in (0, 1]")
    if not 0.0 <= uda.vatvst_vat_share <= 1.0:
        raise StplError("config key 'adapt.uda.vatvst_vat_share' must be in [0, 1]")
