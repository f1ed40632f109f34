"""Import the peers' ACCEL DeepLab-v2 checkpoints (DA-VSN, ICCV 2021; TPS, ECCV 2022) into stpl's segmenter.

Where the names come from: `davsn/model/accel_deeplabv2.py` in github.com/Dayan-Guan/DA-VSN and
`tps/model/accel_deeplabv2.py` in github.com/xing0047/TPS (the same `ResNetMulti` class in both). Their training
scripts save `model.state_dict()` with `torch.save`, so a checkpoint holds, with no prefix:

    conv1.weight [64,3,7,7]; bn1.{weight,bias,running_mean,running_var,num_batches_tracked}
    layer{1..4}.{i}.conv{1,2,3}.weight, .bn{1,2,3}.*, and in every layer's block 0 downsample.0.weight (1x1 conv)
        and downsample.1.* (its batch norm)                       -> backbone.<same name>
    layer6.conv2d_list.{0..3}.{weight [K,2048,3,3], bias [K]}    -> classifier.main.branches.{0..3}.*
    layer5.conv2d_list.{0..3}.{weight [K,1024,3,3], bias [K]}    -> classifier.aux.branches.{0..3}.* (skipped
        when the model has no aux head, i.e. model.aux_weight=0: the peers evaluate the layer6 prediction only)
    sf_layer.weight [K,2K,1,1]                                    -> score_fusion.conv.weight

The score-fusion layer is a 1x1 conv over [current ; warped earlier] logits like ours, in the same order, but has
no bias: ours gets bias 0. The peers apply that one layer to both the layer5 and layer6 logits; by linearity ours,
applied to main + w * aux, gives their main + w * aux. Flow is an input in both codebases (no FlowNet weights are
in the checkpoint; TPS's `warp_bilinear` has none); keys whose first part mentions "flow" are skipped anyway, as
are BN `num_batches_tracked` counters. stpl's own fusion block and projection head keep their initialisation.

Differences that remain: the peers' input is Caffe-style BGR (see deeplabv2.CaffeInput: use
model.input_format=caffe_bgr); their warp puts zeros where the flow leaves the frame, stpl the current logits.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from stpl.errors import StplError
from stpl.models.deeplabv2 import ResNet101DeepLabV2
from stpl.models.segmenter import ADAPTATION_MODULES, VideoSegmenter
from stpl.models.tensor_files import load_tensor_file

# (peer prefix, our prefix); the first match wins.
NAME_PREFIXES = (
    ("conv1.", "backbone.conv1."),
    ("bn1.", "backbone.bn1."),
    ("layer1.", "backbone.layer1."),
    ("layer2.", "backbone.layer2."),
    ("layer3.", "backbone.layer3."),
    ("layer4.", "backbone.layer4."),
    ("layer5.conv2d_list.", "classifier.aux.branches."),
    ("layer6.conv2d_list.", "classifier.main.branches."),
    ("sf_layer.", "score_fusion.conv."),
)
ZERO_FILLED = ("score_fusion.conv.bias",)  # the peers' sf_layer has bias=False


def to_ours(peer_name: str) -> str | None:
    for peer_prefix, our_prefix in NAME_PREFIXES:
        if peer_name.startswith(peer_prefix):
            return our_prefix + peer_name.removeprefix(peer_prefix)
    return None


def to_peer(our_name: str) -> str | None:
    for peer_prefix, our_prefix in NAME_PREFIXES:
        if our_name.startswith(our_prefix):
            return peer_prefix + our_name.removeprefix(our_prefix)
    return None


def is_skipped(peer_name: str, has_aux: bool) -> bool:
    """Peer keys stpl does not use: BN step counters, flow-network weights, and the aux head when ours has none."""
    if peer_name.endswith("num_batches_tracked") or "flow" in peer_name.split(".")[0].lower():
        return True
    return not has_aux and peer_name.startswith("layer5.")


def _strip(state: dict[str, Tensor]) -> dict[str, Tensor]:
    # A checkpoint saved from nn.DataParallel has every name prefixed with "module.".
    return {name.removeprefix("module."): value for name, value in state.items()}


def import_accel_state_dict(state: dict[str, Tensor], model: VideoSegmenter) -> dict[str, Tensor]:
    """A full state dict for `model` built from a peer ACCEL state dict; StplError names the first bad key."""
    own = model.state_dict()
    has_aux = any(name.startswith("classifier.aux.") for name in own)
    imported: dict[str, Tensor] = {}
    for peer_name, value in _strip(state).items():
        if is_skipped(peer_name, has_aux):
            continue
        ours = to_ours(peer_name)
        if ours is None or ours not in own:
            raise StplError(f"ACCEL checkpoint key '{peer_name}' has no counterpart in the stpl model")
        if not isinstance(value, Tensor) or value.shape != own[ours].shape:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise StplError(
                f"ACCEL checkpoint key '{peer_name}' has shape {shape}, but '{ours}' needs {tuple(own[ours].shape)}"
                " (number of classes, or an aux head that model.aux_weight does not match?)"
            )
        imported[ours] = value.to(own[ours].dtype)
    for ours, value in own.items():
        if ours in imported:
            continue
        if ours in ZERO_FILLED:
            imported[ours] = torch.zeros_like(value)
        elif ours.startswith(ADAPTATION_MODULES):
            imported[ours] = value
        else:
            raise StplError(f"ACCEL checkpoint lacks '{to_peer(ours)}' (for '{ours}')")
    return imported


def skipped_accel_keys(state: dict[str, Tensor], model: VideoSegmenter) -> list[str]:
    has_aux = any(name.startswith("classifier.aux.") for name in model.state_dict())
    return [name for name in _strip(state) if is_skipped(name, has_aux)]


def read_accel_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors only (weights_only=True never runs pickled code); a top-level 'state_dict' or 'model' is unwrapped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise StplError(f"ACCEL checkpoint not found: {path}")
    state = load_tensor_file(path, "ACCEL checkpoint")
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if not isinstance(state, dict):
        raise StplError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def load_accel_checkpoint(path: str | Path, model: VideoSegmenter) -> list[str]:
    """Load a DA-VSN / TPS ACCEL checkpoint into `model` (built with resnet101_deeplabv2); returns the skipped keys."""
    backbone = model.backbone
    if not isinstance(backbone, ResNet101DeepLabV2):
        raise StplError("ACCEL checkpoints fit model.backbone=resnet101_deeplabv2 only")
    if backbone.input_format != "caffe_bgr":
        raise StplError(
            "ACCEL checkpoints were trained on Caffe-style BGR input (0..255 minus the mean): build the model with "
            "model.input_format=caffe_bgr"
        )
    state = read_accel_state_dict(path)
    model.load_state_dict(import_accel_state_dict(state, model))
    return skipped_accel_keys(state, model)
