"""Adaptation methods. Each trained one is a `Method` (adapt/base.py) built from the model, the adapt config and a
seed; `METHODS` is the one list of them, from which the CLI help and `stpl bench`'s method names are derived.

To add a method: write a Method subclass (in the package: adapt/<name>.py, its options, if any, as a dataclass field
of AdaptConfig, its name in config.METHOD_NAMES and an entry in METHODS below; outside it: one call to
`register_method`). The config, `stpl adapt --method`, `stpl bench --methods` and the CLI help then know it.
"""

from __future__ import annotations

from dataclasses import dataclass

from stpl.adapt.cotta import CoTTA
from stpl.adapt.davsn import DAVSN
from stpl.adapt.hcl import HCL
from stpl.adapt.norm_ema import NormEMA
from stpl.adapt.self_training import SelfTraining
from stpl.adapt.stpl import STPL
from stpl.adapt.tent import Tent
from stpl.adapt.tps import TPS
from stpl.adapt.uda import FDA, RDA, VATVST, PixMatch, UdaDAVSN, UdaTPS
from stpl.adapt.ur import UR
from stpl.adapt.vst import VST
from stpl.config import METHOD_NAMES, AdaptConfig, Config, with_overrides
from stpl.engine.method import Method
from stpl.models.segmenter import VideoSegmenter

__all__ = [
    "METHODS",
    "TRAINING_FREE",
    "MethodEntry",
    "build_method",
    "register_method",
    "uses_source",
    "with_method_defaults",
]


@dataclass(frozen=True)
class MethodEntry:
    """A method: its class (None: training-free, the normalisation re-estimation is all it does) and one line."""

    method: type[Method] | None
    summary: str


METHODS: dict[str, MethodEntry] = {
    "stpl": MethodEntry(STPL, "spatio-temporal pixel contrast + pseudo-labels (the paper's method)"),
    "adabn": MethodEntry(None, "re-estimate normalisation statistics on the target video, nothing else"),
    # source-free baselines (SPEC §3)
    "tent": MethodEntry(Tent, "entropy minimisation of the normalisation parameters"),
    "self-training": MethodEntry(SelfTraining, "STPL without the contrast: teacher pseudo-labels only"),
    "ur": MethodEntry(UR, "uncertainty reduction with auxiliary decoders"),
    "hcl": MethodEntry(HCL, "historical contrastive learning"),
    "tps": MethodEntry(TPS, "TPS*: cross-frame pseudo-labels under a strong view, source-free"),
    "davsn": MethodEntry(DAVSN, "DA-VSN*: cross-frame consistency, source-free"),
    "vst": MethodEntry(VST, "VAT-VST*: temporally consistent pseudo-labels of the frozen source model"),
    # stream baselines (run online as norm-online, cotta-online)
    "norm-ema": MethodEntry(NormEMA, "normalisation statistics as a moving average over the target batches"),
    "cotta": MethodEntry(CoTTA, "CoTTA: mean teacher, augmentation-averaged labels, stochastic restore"),
    # domain adaptation WITH labelled source data (adapt/uda/): baselines, not source-free
    "uda-fda": MethodEntry(FDA, "FDA, uses source data: source in target style + target entropy"),
    "uda-pixmatch": MethodEntry(PixMatch, "PixMatch, uses source data: source + target pixelwise consistency"),
    "uda-rda": MethodEntry(RDA, "RDA, uses source data: Fourier adversarial attacks on source and target"),
    "uda-davsn": MethodEntry(UdaDAVSN, "DA-VSN, uses source data: spatial/temporal adversarial + ITCR"),
    "uda-vatvst": MethodEntry(VATVST, "VAT-VST, uses source data: video adversarial, then video self-training"),
    "uda-tps": MethodEntry(UdaTPS, "TPS, uses source data: source + temporal pseudo-supervision"),
}
if list(METHODS) != METHOD_NAMES:
    raise ImportError(f"stpl.adapt.METHODS {list(METHODS)} and config.METHOD_NAMES {METHOD_NAMES} differ")


def register_method(name: str, method: type[Method], summary: str) -> None:
    """Make a trained method known everywhere (config, CLI, bench) under `name`: for methods written outside the
    package (a plugin, a test). Its options come from the adapt.* keys that exist."""
    if name in METHODS:
        raise ValueError(f"an adaptation method named '{name}' exists already")
    METHODS[name] = MethodEntry(method, summary)
    METHOD_NAMES.append(name)


def training_free() -> tuple[str, ...]:
    """Methods that only re-estimate normalisation statistics and train nothing."""
    return tuple(name for name, entry in METHODS.items() if entry.method is None)


TRAINING_FREE = training_free()


def uses_source(name: str) -> bool:
    """Whether the method of this name trains with labelled source data (the uda-* baselines)."""
    entry = METHODS.get(name)
    return entry is not None and entry.method is not None and entry.method.uses_source


def with_method_defaults(config: Config) -> Config:
    """`config` with what its method settles when a setting says "default" written in (the UDA rows' source
    normalisation, `default_source_statistics`), once, where a run starts: the recorded config says what ran."""
    method = METHODS[config.adapt.method].method if config.adapt.method in METHODS else None
    chosen = getattr(method, "default_source_statistics", None)
    if chosen is None or config.adapt.uda.source_statistics != "default":
        return config
    return with_overrides(config, {"adapt": {"uda": {"source_statistics": chosen}}})


def build_method(model: VideoSegmenter, config: AdaptConfig, seed: int) -> Method:
    entry = METHODS.get(config.method)
    if entry is None or entry.method is None:
        trained = [name for name, known in METHODS.items() if known.method is not None]
        raise ValueError(f"'{config.method}' is not a trained adaptation method (known: {', '.join(trained)})")
    return entry.method(model, config, seed=seed)
