"""`stpl export`: a checkpoint as an ONNX file, for onnxruntime or any other ONNX runtime.

Two models, both at the checkpoint's frame size (H, W) with a dynamic batch dimension:

    single-frame (default)   image [B,3,H,W]                                   -> logits [B,K,H,W]
    two-frame (--temporal)   current [B,3,H,W], previous [B,3,H,W], flow [B,2,H,W] -> logits [B,K,H,W]

Inputs are float32 RGB frames normalised as `stpl.data.pairs.normalize` does: (pixel / 255 - mean) / std with the
ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), channels first. `flow` is the backward flow from
the current frame to the previous one in pixels of the H x W frame, (dx, dy) per pixel: the current pixel p shows
what was at p + flow(p) in the previous frame (what `stpl predict` computes with DIS). Where p + flow(p) falls
outside the previous frame, the model uses the current frame alone, as in torch.

The logits are bilinearly upsampled to H x W, so `logits.argmax(1)` is the class map at the input size. The
single-frame model is what `stpl predict` computes for a frame with no earlier frame (the frame paired with itself,
zero flow): the score fusion of the frame's logits with themselves, not the bare per-frame logits. The class names,
the normalisation, the input size and the inputs' meaning are in the file's metadata_props, each value JSON.

The graph comes from torch's default exporter (`torch.onnx.export(dynamo=True)`: torch.export, then onnxscript), at
opset 18 (grid_sample, which the flow warp uses, needs 16 or later). It captures the whole program with a symbolic
batch, where the legacy TorchScript tracer (dynamo=False, deprecated since torch 2.9) freezes the Python values it
meets (sizes, the flow resize's branch) into constants with a warning each. Before the file is put in place,
onnxruntime runs it on random inputs and its logits are compared with torch's; a file that disagrees is not written.
Needs the `export` extra (onnx, onnxruntime, onnxscript): pip install 'stpl[export]'.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from stpl.atomic import atomic_write
from stpl.constants import IMAGENET_MEAN, IMAGENET_STD
from stpl.engine.checkpoint import file_sha1, load_checkpoint
from stpl.engine.checkpoint_model import model_for_checkpoint
from stpl.errors import StplError
from stpl.models import VideoSegmenter
from stpl.models.segmenter import upsample
from stpl.version import __version__

FORMATS = ("onnx",)
OPSET = 18
SINGLE_INPUTS = ("image",)
TEMPORAL_INPUTS = ("current", "previous", "flow")
OUTPUT = "logits"
INSTALL_HINT = "pip install 'stpl[export]' (in a checkout: make setup)"
# The check before a file is written: the largest |onnxruntime - torch| allowed, relative to the largest |logit|.
# Kernels differ (summation order, fused ops), so float32 results differ by rounding: ~1e-6 relative on the models
# here. 1e-4 allows for deep networks and still catches any wrong operator, which is off by whole logits.
CHECK_TOLERANCE = 1e-4
NORMALIZATION = {
    "layout": "NCHW float32, RGB",
    "formula": "(pixel / 255 - mean) / std",
    "mean": list(IMAGENET_MEAN),
    "std": list(IMAGENET_STD),
}


class SingleFrame(nn.Module):
    """image -> logits at the image size, as `stpl predict` gives for a frame paired with itself."""

    def __init__(self, model: VideoSegmenter):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tensor:
        logits = self.model.classify(self.model.encode(image))
        # Paired with itself at zero flow the warp is the identity and every pixel valid: only the fusion remains.
        return upsample(self.model.score_fusion(logits, logits), image.shape[-2:])


class TwoFrame(nn.Module):
    """(current, previous, flow) -> the fused video logits at the frame size."""

    def __init__(self, model: VideoSegmenter):
        super().__init__()
        self.model = model

    def forward(self, current: Tensor, previous: Tensor, flow: Tensor) -> Tensor:
        return upsample(self.model(current, previous, flow).logits, current.shape[-2:])


@dataclass
class Exported:
    path: Path
    inputs: tuple[str, ...]
    size: tuple[int, int]
    max_difference: float  # largest |onnxruntime - torch| logit on the check's random inputs


def require_onnx() -> ModuleType:
    """onnxruntime, or a StplError saying how to install the export extra (onnx and onnxscript: torch's exporter)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError as err:
        missing = f"ONNX export needs onnx, onnxruntime and onnxscript ({err.name} is missing)"
        raise StplError(f"{missing}: {INSTALL_HINT}") from None
    return onnxruntime


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise StplError(f"unknown export format '{fmt}' (known: {', '.join(FORMATS)})")


def export_checkpoint(checkpoint: Path, out: Path, fmt: str = "onnx", temporal: bool = False) -> Exported:
    """Export `checkpoint`'s model (single-frame, or two-frame with `temporal`) to `out`."""
    check_format(fmt)
    require_onnx()
    saved = load_checkpoint(checkpoint)
    model, config = model_for_checkpoint(saved)
    if temporal and not config.model.temporal:
        raise StplError(f"{checkpoint} was trained without the earlier frame (model.temporal=false): no --temporal")
    size = (config.data.height, config.data.width)
    provenance = {"checkpoint": Path(checkpoint).name, "checkpoint_sha1": file_sha1(checkpoint)}
    check_out_file(Path(out))
    for stale in Path(out).parent.glob(f".{Path(out).name}.*.tmp"):  # left by an export killed while writing
        stale.unlink(missing_ok=True)
        print(f"[export] removed {stale}, left by an export that was stopped", file=sys.stderr)
    return export_model(model, out, size, saved.class_names, temporal, provenance)


def check_out_file(out: Path) -> None:
    """--out may be a new file or an earlier stpl export (replaced); anything else is the user's and stays."""
    if not out.exists():
        return
    if out.is_dir():
        raise StplError(f"--out {out} is a folder; give the file to write, e.g. {out / 'model.onnx'}")
    if not is_stpl_export(out):
        raise StplError(f"--out {out} exists and is not an ONNX model stpl exported; choose another --out or remove it")


def is_stpl_export(path: Path) -> bool:
    """Whether `path` is an ONNX file whose metadata says stpl wrote it (its graph is not read)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # not ONNX at all: a decode error of any kind
        return False
    return any(prop.key == "stpl_version" for prop in proto.metadata_props)


def export_model(
    model: VideoSegmenter,
    out: Path,
    size: tuple[int, int],
    class_names: list[str],
    temporal: bool = False,
    provenance: dict[str, Any] | None = None,  # more metadata, e.g. the checkpoint it came from
) -> Exported:
    """Write `model` (on the CPU) as ONNX to `out`, atomically, once onnxruntime has reproduced torch's logits."""
    require_onnx()
    wrapper = (TwoFrame(model) if temporal else SingleFrame(model)).eval()
    names = TEMPORAL_INPUTS if temporal else SINGLE_INPUTS
    example = example_inputs(len(names), size, batch=2)
    program = _onnx_program(wrapper, example, names)
    program.model.metadata_props.update(metadata(class_names, size, temporal, provenance or {}))
    difference = 0.0

    def write(temporary: str) -> None:
        nonlocal difference
        program.save(temporary, external_data=False)  # one self-contained file (the models here are far below 2 GB)
        difference = check_against_torch(wrapper, temporary, names, size)

    atomic_write(out, write)
    return Exported(Path(out), names, size, difference)


def _onnx_program(wrapper: nn.Module, example: tuple[Tensor, ...], names: tuple[str, ...]) -> Any:
    batch = torch.export.Dim("batch")
    dynamic = {name: {0: batch} for name in names}
    with _quiet_exporter():
        try:
            return torch.onnx.export(
                wrapper, example, input_names=list(names), output_names=[OUTPUT], opset_version=OPSET,
                dynamo=True, dynamic_shapes=dynamic, verbose=False,
            )  # fmt: skip
        except torch.onnx.errors.OnnxExporterError as err:
            if _caused_by(err, KeyboardInterrupt):  # Ctrl-C inside the exporter: a stop, not a failure
                raise KeyboardInterrupt from None
            first_line = ANSI_ESCAPE.sub("", str(err)).strip().splitlines()[0]
            raise StplError(f"ONNX export failed: {first_line}") from err


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # the exporter colours its report for a terminal


def _caused_by(err: BaseException, kind: type[BaseException]) -> bool:
    """Whether `kind` is `err` or anywhere in the chain of exceptions that led to it."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's notes about optional torchvision ops and torch's own deprecations say nothing about the model."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", ".*The axis name: .* will not be used", UserWarning)
            yield
    finally:
        registration.setLevel(level)


def metadata(
    class_names: list[str], size: tuple[int, int], temporal: bool, provenance: dict[str, Any]
) -> dict[str, str]:
    inputs = {
        "image": "normalised current frame [B,3,H,W]",
        "current": "normalised current frame [B,3,H,W]",
        "previous": "normalised previous frame [B,3,H,W]",
        "flow": "backward flow current -> previous [B,2,H,W] in pixels, (dx, dy): pixel p shows previous(p + flow)",
    }
    values = {
        "class_names": list(class_names),
        "normalization": NORMALIZATION,
        "input_size": {"height": size[0], "width": size[1]},
        "inputs": {name: inputs[name] for name in (TEMPORAL_INPUTS if temporal else SINGLE_INPUTS)},
        "output": "logits [B,K,H,W] at the input size; argmax over axis 1 gives class ids into class_names",
        "model": "two-frame (temporal)" if temporal else "single-frame",
        "stpl_version": __version__,
        **provenance,
    }
    return {key: json.dumps(value) for key, value in values.items()}  # every value JSON: one way to read them all


def example_inputs(count: int, size: tuple[int, int], batch: int, seed: int = 0) -> tuple[Tensor, ...]:
    """Random normalised frames (and, as the third input, a flow of up to a third of the frame, so that some
    pixels come from outside the earlier frame and the fallback to the current frame is exercised)."""
    generator = torch.Generator().manual_seed(seed)
    frames = [torch.randn(batch, 3, *size, generator=generator) for _ in range(min(count, 2))]
    if count < 3:
        return tuple(frames)
    extent = torch.tensor([size[1], size[0]], dtype=torch.float32).view(1, 2, 1, 1)
    flow = (torch.rand(batch, 2, *size, generator=generator) - 0.5) * 2 / 3 * extent
    return (*frames, flow)


def onnx_session(path: str | Path, threads: int = 0) -> Any:
    """An onnxruntime CPU session for `path`; `threads` > 0 fixes its intra-op threads (0: onnxruntime's default)."""
    onnxruntime = require_onnx()
    options = onnxruntime.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@torch.no_grad()
def check_against_torch(wrapper: nn.Module, path: str | Path, names: tuple[str, ...], size: tuple[int, int]) -> float:
    """The largest |onnxruntime - torch| logit on random inputs of another batch size than the example's (which
    checks the dynamic batch too); a StplError when it exceeds CHECK_TOLERANCE of the largest logit."""
    inputs = example_inputs(len(names), size, batch=3, seed=1)
    expected = wrapper(*inputs).numpy()
    feed = {name: value.numpy() for name, value in zip(names, inputs, strict=True)}
    found = onnx_session(path).run([OUTPUT], feed)[0]
    difference = float(np.abs(found - expected).max())
    if not difference <= CHECK_TOLERANCE * max(1.0, float(np.abs(expected).max())):
        raise StplError(f"onnxruntime's logits differ from torch's by up to {difference:.3g}: no file written")
    return difference
