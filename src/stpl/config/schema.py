"""The config schema: nested dataclasses whose defaults are the synthetic demo's settings.

YAML files hold only overrides; ``--set key=value`` applies on top. Every override is type-checked against the
schema before any work starts, and an unknown key fails naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from stpl.config.checks import validate
from stpl.config.files import load_config_file
from stpl.config.methods import CottaConfig, DavsnConfig, HclConfig, OnlineConfig, TpsConfig, UdaConfig, UrConfig
from stpl.config.overrides import apply_overrides, merged_overrides, parse_set_option
from stpl.config.ranges import at_least, between, interval, not_negative, positive

# The names the schema accepts for data.dataset and adapt.method. Each has its registry (stpl.data.DATASETS,
# stpl.adapt.METHODS), which must list the same names in the same order (checked when the registry is imported).
# Field metadata: schema facts the run machinery needs (see `marked_keys`).
NOT_A_RESULT = {"result": False}  # where or how fast a run goes, or what it prints; not what it computes
ARCHITECTURE = {"architecture": True}  # the network's shape: taken from a checkpoint, never from the user's config
TARGET_ONLY = {"target_only": True}  # only chooses target frames: source training never reads it
# a file or folder on the user's machine: never taken from a checkpoint's config (engine/checkpoint_model.py), so
# that a checkpoint from someone else never decides where files are read or written
LOCAL_PATH = {"local_path": True}

DATASET_NAMES = ("synthetic", "camvid", "cityscapes_seq", "viper", "synthia_seq", "frames")
METHOD_NAMES = ["stpl", "adabn", "tent", "self-training", "ur", "hcl", "tps", "davsn", "vst"]
# stream baselines (online: norm-online, cotta-online)
METHOD_NAMES += ["norm-ema", "cotta"]
# domain adaptation with labelled source data (adapt/uda/): the paper's UDA rows
METHOD_NAMES += ["uda-fda", "uda-pixmatch", "uda-rda", "uda-davsn", "uda-vatvst", "uda-tps"]


@dataclass
class SyntheticConfig:
    """The built-in synthetic benchmark; disjoint seeds per split keep the clips apart."""

    num_frames: int = 6  # frames per clip; each clip gives num_frames - frame_gap training pairs
    source_clips: int = field(default=48, metadata=at_least(1))  # labelled source-domain clips for train-source
    # unlabelled target-domain clips for adaptation (labels used only by the oracle)
    adapt_clips: int = field(default=24, metadata=at_least(1))
    eval_clips: int = field(default=16, metadata=at_least(1))  # labelled target-domain clips for evaluation
    seed: int = field(default=0, metadata=not_negative())  # base seed; each split offsets it so no clip is shared
    # Strength in [0, 1] of per-frame flicker, noise and transient occluders on target frames (0 = none): a
    # target where the earlier frame holds what the current one lost (data/synthetic_nuisance.py).
    temporal_nuisance: float = field(default=0.0, metadata=between(0, 1))


@dataclass
class CamVidConfig:
    """CamVid in the SegNet layout; which sequences are source and how the target divides are config values."""

    root: str = field(default="../shared/data/camvid", metadata=LOCAL_PATH)
    source_sequences: tuple[str, ...] = ("0006R0", "0016E5")
    # stretches of source sequences left out of the source set, as "<sequence>:<first>-<last>" (frame numbers)
    source_exclude: tuple[str, ...] = ()
    target_sequence: str = field(default="0001TP", metadata=TARGET_ONLY)
    # The target's adaptation and evaluation frames: the target sequence's frames listed in a list file, or a
    # frame range [first, last] (a range, when given, wins over the list).
    adapt_list: str = field(default="train.txt", metadata=TARGET_ONLY)
    eval_list: str = field(default="test.txt", metadata=TARGET_ONLY)
    adapt_range: tuple[int, ...] = field(default=(), metadata=TARGET_ONLY)
    eval_range: tuple[int, ...] = field(default=(), metadata=TARGET_ONLY)
    # a fixed, deterministic corruption of the target frames (adapt and eval splits; data/corruptions.py)
    # (night: darker, blurred, noisy; adverse: a different flicker, rain, occluder, blur and noise in every frame)
    # (low_contrast, defocus, cold_cast, sensor_noise: held-out shifts, for choosing online settings)
    target_corruption: Literal[
        "none", "night", "adverse", "fog", "colour_cast", "low_contrast", "defocus", "cold_cast", "sensor_noise"
    ] = field(default="none", metadata=TARGET_ONLY)
    # A continual stream (data/continual.py) as the evaluation split: the eval frames in blocks of
    # continual_frames, block j under continual_shifts[j] (these corruptions replace target_corruption there), the
    # whole sequence of shifts repeated continual_rounds times; empty = off
    continual_shifts: tuple[str, ...] = field(default=(), metadata=TARGET_ONLY)
    continual_frames: int = field(default=8, metadata=TARGET_ONLY)
    continual_rounds: int = field(default=5, metadata=TARGET_ONLY)


@dataclass
class CityscapesSeqConfig:
    """Cityscapes-Seq as target: split adapt = train snippets (labels never read), eval = val, source = train."""

    # holds leftImg8bit_sequence/{train,val}/<city>/ and gtFine/{train,val}/<city>/
    root: str = field(default="data/Cityscapes", metadata=LOCAL_PATH)
    protocol: Literal["viper15", "synthia12"] = "viper15"  # class list; must match the source data set's
    # Labelled frames: the 20th of each 30-frame snippet, or the lines of a peers' list file (city/<name>.png)
    train_list: str = field(default="", metadata=LOCAL_PATH)
    val_list: str = field(default="", metadata=LOCAL_PATH)
    # flow.method=files: flat folder of <city>_<seq>_<t>_<t-k>_int16_x10.npy (train)
    flow_dir_train: str = field(default="", metadata=LOCAL_PATH)
    flow_dir_val: str = field(default="", metadata=LOCAL_PATH)  # the same for val


@dataclass
class ViperConfig:
    """VIPER as source (viper15 protocol): labelled frames are the class PNGs under `labels`."""

    root: str = field(default="data/Viper", metadata=LOCAL_PATH)
    images: str = field(default="train/img", metadata=LOCAL_PATH)  # <seq>/<seq>_<frame:05d>.jpg, every frame
    # <seq>/<seq>_<frame:05d>.png, indexed-colour PNGs (index = VIPER class id)
    labels: str = field(default="train/cls", metadata=LOCAL_PATH)
    ignore_ego_vehicle: bool = True  # the peers void the car component touching the bottom centre
    # keep every n-th labelled frame: all ~13k pairs take tens of GB in memory
    subsample: int = field(default=1, metadata=positive())
    # flow.method=files: flat folder of <seq>_<t:05d><t-k:05d>_int16_x10.npy (peers' naming)
    flow_dir: str = field(default="", metadata=LOCAL_PATH)


@dataclass
class SynthiaSeqConfig:
    """SYNTHIA-SEQS-04-DAWN as source (synthia12 protocol): every frame is labelled."""

    root: str = field(default="data/SynthiaSeq/SEQS-04-DAWN", metadata=LOCAL_PATH)
    # <frame:06d>.png; the peers' code expects a copy in rgb/
    images: str = field(default="RGB/Stereo_Left/Omni_F", metadata=LOCAL_PATH)
    # 16-bit PNGs, class id in the red channel; peers: label/
    labels: str = field(default="GT/LABELS/Stereo_Left/Omni_F", metadata=LOCAL_PATH)
    # fraction of rows cut at the bottom (the peers cut 120 of 640 rows)
    crop_bottom: float = field(default=0.1875, metadata=between(0, 1, high_open=True))
    # flow.method=files: flat folder of <t:06d>_int16_x10.npy (t -> t-1 only)
    flow_dir: str = field(default="", metadata=LOCAL_PATH)


@dataclass
class FramesConfig:
    """Unlabelled video of one's own (data/frames.py) as the target: a folder of images or a video file."""

    # a folder of images (sorted by name: png, jpg, ...) or a video file (OpenCV)
    path: str = field(default="", metadata=LOCAL_PATH)
    stride: int = 1  # read every N-th frame (the frame gap k is then N frames of the input)
    start: int = 0  # first frame index read
    end: int = -1  # stop before this frame index (-1 = to the last)
    # class names: empty = the source checkpoint's (filled in by `stpl adapt`); the frames carry no labels
    classes: tuple[str, ...] = ()


@dataclass
class DataConfig:
    dataset: Literal[DATASET_NAMES] = "synthetic"
    # The source split's data set when it differs from the target's ("" = data.dataset): viper or synthia_seq
    # with cityscapes_seq as data.dataset. Adaptation and evaluation never open it.
    source_dataset: Literal[("", *DATASET_NAMES)] = ""
    height: int = field(default=120, metadata=positive())
    width: int = field(default=160, metadata=positive())
    # k: the earlier frame is t - k (in the dataset's frame steps)
    frame_gap: int = field(default=1, metadata=positive())
    # threads decoding the video data sets' frames (OpenCV releases the GIL)
    read_workers: int = field(default=2, metadata={**NOT_A_RESULT, **positive()})
    # memory: each split's frames, labels and flow held as arrays; disk: frames and labels in an unlinked scratch
    # file under storage_dir and flow in the flow cache, read per batch (memory bounded by the batch, not the
    # split; data/storage.py). Results are identical.
    storage: Literal["memory", "disk"] = field(default="memory", metadata=NOT_A_RESULT)
    storage_dir: str = field(default="~/.cache/stpl/scratch", metadata={**NOT_A_RESULT, **LOCAL_PATH})
    # processes preparing training batches ahead of the step (torch DataLoader; 0 = in the training process)
    loader_workers: int = field(default=0, metadata={**NOT_A_RESULT, **not_negative()})
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    camvid: CamVidConfig = field(default_factory=CamVidConfig)
    cityscapes_seq: CityscapesSeqConfig = field(default_factory=CityscapesSeqConfig)  # target of both protocols
    viper: ViperConfig = field(default_factory=ViperConfig)  # source of VIPER -> Cityscapes-Seq
    synthia_seq: SynthiaSeqConfig = field(default_factory=SynthiaSeqConfig)  # source of SYNTHIA-Seq -> Cityscapes-Seq
    frames: FramesConfig = field(default_factory=FramesConfig)  # one's own unlabelled video (target only)


@dataclass
class FlowConfig:
    # "exact" = the synthetic generator's ground-truth flow; "files" = the peers' precomputed flow files (video
    # data sets; folders in data.<dataset>.flow_dir*)
    method: Literal["dis", "exact", "files"] = "dis"
    dis_preset: Literal["ultrafast", "fast", "medium"] = "medium"
    # DIS runs at this share of the data size and its field is resized back: 0.5 is ~2.5x faster for 0.8 points
    # less label agreement on CamVid source pairs (results/flow-presets); 1 = at the data size
    scale: float = field(default=1.0, metadata=between(0, 1, low_open=True))
    # computed once per frame pair, reused by every run
    cache_dir: str = field(default="~/.cache/stpl/flow", metadata={**NOT_A_RESULT, **LOCAL_PATH})
    # threads computing DIS flow (one per core here)
    workers: int = field(default=2, metadata={**NOT_A_RESULT, **at_least(1)})


@dataclass
class ModelConfig:
    backbone: Literal["mobilenet_v2", "tiny", "resnet101_deeplabv2"] = field(
        default="mobilenet_v2", metadata=ARCHITECTURE
    )
    pretrained: bool = True  # ImageNet initialisation for mobilenet_v2
    # explicit ImageNet weights file; empty = look in the offline package
    weights_path: str = field(default="", metadata=LOCAL_PATH)
    # 8 resolves thin classes better but costs ~3x the time on CPU
    output_stride: Literal[8, 16] = field(default=16, metadata=ARCHITECTURE)
    # aspp: ASPP on the output-stride features (the old recipe); lraspp: a gated 1x1 branch on them, upsampled to
    # stride 8 and joined with the backbone's stride-8 features, so thin classes keep a finer map
    head: Literal["aspp", "lraspp"] = field(default="lraspp", metadata=ARCHITECTURE)
    # C: channels of the ASPP output, or of the lraspp deep branch (its output adds the stride-8 channels: 32 for
    # mobilenet_v2); fusion and the projection head see the neck's output
    feature_channels: int = field(default=128, metadata={**ARCHITECTURE, **positive()})
    # head=aspp; small rates: the demo's feature maps are only 8x10
    aspp_rates: tuple[int, ...] = field(default=(2, 4, 6), metadata=ARCHITECTURE)
    fusion: Literal["concat", "add", "conv", "attention"] = "conv"
    projection_dim: int = field(default=128, metadata=positive())  # D of the pixel embeddings
    # false = the no-temporal control: the network sees frame t as its own earlier frame, with zero flow (same
    # parameters and schedule). Set for adaptation it applies there and, through the checkpoint, in evaluation;
    # the source model it starts from is the usual temporal one.
    temporal: bool = True
    # > 0: where the earlier image warped to frame t differs from frame t by more than this (mean absolute
    # difference of the network's input values over a feature cell), the earlier frame is treated as invalid there
    # and the fusion uses the current frame alone. 0 = off (the paper's model).
    warp_error_limit: float = field(default=0.0, metadata=not_negative())
    # resnet101_deeplabv2: weight of the layer3 head's logits added to layer4's (0 = none)
    aux_weight: float = field(default=0.0, metadata={**ARCHITECTURE, **not_negative()})
    # caffe_bgr: the BGR 0..255 input of ACCEL weights
    input_format: Literal["imagenet", "caffe_bgr"] = field(default="imagenet", metadata=ARCHITECTURE)

    def network_options(self, load_pretrained: bool = True) -> dict[str, Any]:
        """The keyword arguments of `stpl.models.build_model`: every field but `temporal` (a data setting);
        `load_pretrained=False` skips ImageNet weights that a checkpoint will overwrite anyway."""
        options = {spec.name: getattr(self, spec.name) for spec in dataclasses.fields(self) if spec.name != "temporal"}
        options["pretrained"] = self.pretrained and load_pretrained
        return options


@dataclass
class TrainConfig:
    """Supervised training (source model and oracle)."""

    iterations: int = field(default=500, metadata=not_negative())
    # oracle steps (0 = iterations): the oracle trains on the target adaptation frames, often far fewer than source
    oracle_iterations: int = field(default=0, metadata=not_negative())
    batch_size: int = field(default=8, metadata=positive())
    # The defaults are the recipe of docs/recipe.md (chosen on held-out CamVid source frames); the first recipe was
    # sgd, lr 0.01, weight decay 5e-4, no warm-up, no rescale, unweighted, head=aspp.
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = field(default=0.005, metadata=positive())
    # pretrained layers move slower than the freshly initialised head
    backbone_lr_scale: float = field(default=0.1, metadata=not_negative())
    momentum: float = field(default=0.9, metadata=between(0, 1, high_open=True))  # sgd momentum, or adamw's beta1
    weight_decay: float = field(default=1e-4, metadata=not_negative())
    warmup_steps: int = field(default=20, metadata=not_negative())  # linear lr warm-up before the poly decay
    # mixed precision: bf16 autocast (CPU or CUDA), fp16 with a gradient scaler (CUDA only); weights stay float32
    amp: Literal["off", "bf16", "fp16"] = "off"
    hflip: bool = True
    # random rescale of each training pair by a factor in [low, high], then a crop back to the data size (padding
    # ignored); empty = no rescale. Frame t, frame t-k, the flow and the label move together.
    scale_range: tuple[float, ...] = field(default=(0.75, 1.5), metadata=interval())
    # cross-entropy class weights (median frequency of the training labels / frequency) ** power; 0 = unweighted,
    # 0.5 = the square root (losses/class_weights.py)
    class_weight_power: float = field(default=0.5, metadata=not_negative())
    # strength of random brightness, contrast, saturation, colour gain, blur and noise on each training pair
    # (data/photometric.py; 1 = brightness ±0.2, contrast ×[0.6, 1.4], ...); 0 = off
    photometric: float = field(default=0.0, metadata=between(0, 2))
    log_every: int = field(default=25, metadata={**NOT_A_RESULT, **at_least(1)})
    checkpoint_every: int = field(default=100, metadata={**NOT_A_RESULT, **at_least(1)})
    # also a checkpoint whenever this many minutes passed since the last one (0 = by steps only), so that a
    # killed run never loses more; Ctrl-C and SIGTERM write one before stopping anyway
    checkpoint_minutes: float = field(default=5.0, metadata={**NOT_A_RESULT, **not_negative()})


@dataclass
class AdaptConfig:
    """STPL adaptation; every open choice of SPEC §2 is an option here."""

    # adabn = re-estimate normalisation statistics on target, nothing else; the others train (adapt/<name>.py)
    method: str = "stpl"  # one of METHOD_NAMES (checked in config/checks.py)
    iterations: int = field(default=300, metadata=not_negative())
    batch_size: int = field(default=8, metadata=positive())
    amp: Literal["off", "bf16", "fp16"] = "off"  # as train.amp; the contrast and pseudo-labels stay in float32
    lr: float = field(default=0.002, metadata=positive())
    backbone_lr_scale: float = field(default=0.1, metadata=not_negative())
    momentum: float = field(default=0.9, metadata=between(0, 1, high_open=True))
    weight_decay: float = field(default=5e-4, metadata=not_negative())
    # what trains: every weight, or only the batch-norm affine parameters (TENT's choice, without weight decay),
    # for the methods built on adapt/base.py (stpl, self-training, vst, hcl, tps, cotta, ...); tent always trains "norm"
    trainable: Literal["all", "norm"] = "all"
    norm: Literal["frozen", "reestimate", "update"] = "reestimate"
    # reestimate: share of the source statistics kept (0 = plain AdaBN)
    norm_source_weight: float = field(default=0.0, metadata=between(0, 1))
    teacher: Literal["source", "ema", "current"] = "ema"
    teacher_flip: bool = False  # the teacher averages its predictions of the pair and of its mirror image
    ema_momentum: float = field(default=0.99, metadata=between(0, 1, high_open=True))
    # global: one threshold; class_balanced: the top class_fraction of each class in each batch; class_median:
    # per-class thresholds min(threshold, median confidence of the class), set once over the whole adaptation set
    # by the teacher before adaptation starts
    confidence: Literal["global", "class_balanced", "class_median"] = "class_balanced"
    # global rule: keep pixels whose teacher confidence is at least this; class_median: cap
    threshold: float = field(default=0.9, metadata=between(0, 1))
    # class-balanced rule: keep the most confident fraction of each predicted class
    class_fraction: float = field(default=0.5, metadata=between(0, 1, low_open=True))
    temporal_agreement: bool = False  # also require agreement with the warped prediction of frame t-k
    # pseudo-labels from the mean of the teacher's probabilities for frame t and its warped ones for frame t-k
    temporal_ensemble: bool = False
    # Look ahead (data/neighbours.py): the teacher also predicts the following pair (t+k, t) and its prediction of
    # t+k, warped to t by the forward flow, joins the mean where it lands inside frame t (and passes the check below)
    teacher_later: bool = False
    # With teacher_later: drop the look ahead where frame t+k warped to t differs from frame t by more than this
    # (mean absolute difference of the images, each standardised per channel, so that a flicker is no difference;
    # 0 = no check). Catches occlusions and wrong flow.
    later_error_limit: float = field(default=0.0, metadata=not_negative())
    loss_form: Literal["seed", "infonce"] = "seed"
    temperature: float = field(default=0.1, metadata=positive())
    anchors_per_class: int = field(default=64, metadata=positive())  # M: sampled anchors per pseudo-class per batch
    cross_frame_keys: bool = False  # add the warped earlier frame's embeddings to the keys
    # With several processes (torchrun): every process's sampled pixels serve as keys for all (the contrast of the
    # global batch); anchors stay each process's own
    gather_keys: bool = False
    lambda_contrast: float = field(default=0.1, metadata=not_negative())
    lambda_pl: float = field(default=1.0, metadata=not_negative())
    # L2-SP: λ/2 · ||θ - θ_source||² keeps the adapted weights near the starting model's (stpl, self-training)
    lambda_anchor: float = field(default=0.0, metadata=not_negative())
    # The student's strong view (adapt/student_view.py); the teacher always sees the clean frames.
    # strength of the student's photometric perturbation (0 = clean view)
    student_augmentation: float = field(default=0.0, metadata=between(0, 2))
    # [low, high]: random rescale + crop, labels alike (empty = off)
    student_scale_range: tuple[float, ...] = field(default=(), metadata=interval())
    # share of frame t's area hidden from the student in one box (0 = off)
    student_cutout: float = field(default=0.0, metadata=between(0, 1, high_open=True))
    # Every N steps keep a copy of the weights in snapshots/ (0 = none): `stpl bench` scores them afterwards for
    # the adaptation-curve plot only, never to pick a model; adaptation itself still reads no labels.
    snapshot_every: int = field(default=0, metadata={**NOT_A_RESULT, **not_negative()})
    # After adapting, score the adapted and the source model by the label-free estimate on the adaptation frames
    # (analysis/label_free.py: a few inference passes) and say in one line which looks better: OUT/estimate.json
    estimate: bool = field(default=True, metadata=NOT_A_RESULT)
    # --method auto (selection.py): the methods tried beside keeping the source model, and how far a candidate's
    # estimate must exceed the source model's to be chosen over it (also where `stpl adapt`'s closing line calls a
    # difference clear). Chosen on held-out adaptation frames (docs/label_free.md): where no candidate helped
    # (camvid-day on clean CamVid day frames) they scored up to 1.2 above the source model; on camvid-dusk, where
    # every candidate gained 6 mIoU, the best scored 2.6 above it. Not part of a run's identity: a candidate's run
    # does not depend on them, and auto makes its choice afresh each time
    auto_candidates: tuple[str, ...] = field(default=("adabn", "self-training", "stpl"), metadata=NOT_A_RESULT)
    auto_margin: float = field(default=1.5, metadata={**NOT_A_RESULT, **not_negative()})
    log_every: int = field(default=25, metadata={**NOT_A_RESULT, **at_least(1)})
    checkpoint_every: int = field(default=100, metadata={**NOT_A_RESULT, **at_least(1)})
    # also a checkpoint whenever this many minutes passed since the last one (0 = by steps only), so that a
    # killed run never loses more; Ctrl-C and SIGTERM write one before stopping anyway
    checkpoint_minutes: float = field(default=5.0, metadata={**NOT_A_RESULT, **not_negative()})
    ur: UrConfig = field(default_factory=UrConfig)  # options of method=ur
    hcl: HclConfig = field(default_factory=HclConfig)  # options of method=hcl
    tps: TpsConfig = field(default_factory=TpsConfig)  # options of method=tps
    davsn: DavsnConfig = field(default_factory=DavsnConfig)  # options of method=davsn
    uda: UdaConfig = field(default_factory=UdaConfig)  # options of the uda-* methods (with source data)
    cotta: CottaConfig = field(default_factory=CottaConfig)  # options of method=cotta
    # method=norm-ema: how far each update moves the stored BN statistics
    norm_ema_momentum: float = field(default=0.1, metadata=between(0, 1, low_open=True))
    online: OnlineConfig = field(default_factory=OnlineConfig)  # online adaptation while predicting


@dataclass
class EvalConfig:
    batch_size: int = field(default=8, metadata=positive())
    # "adapt" scores the adaptation frames' labels: for choosing defaults, never for reporting
    split: Literal["eval", "adapt"] = "eval"
    # Size of the evaluation labels (0 = data.height x data.width); predictions are upsampled to it. The peers
    # score Cityscapes-Seq at its full 1024 x 2048 label resolution.
    label_height: int = field(default=0, metadata=not_negative())
    label_width: int = field(default=0, metadata=not_negative())


@dataclass
class LogConfig:
    """Experiment logging beside metrics.jsonl (engine/tensorboard.py)."""

    # TensorBoard event files in each run folder's tensorboard/ (needs the `tensorboard` extra): losses, lr,
    # method statistics, the collapse figures, normalisation drift, evaluation scores and a few overlays
    tensorboard: bool = False


# the most torch intra-op threads `threads` may ask for: above the cores of any machine stpl runs on, below the
# counts at which thread creation fails (100000 ended in a segmentation fault with nothing said)
MAX_THREADS = 1024


@dataclass
class Config:
    seed: int = field(default=0, metadata=not_negative())
    device: str = field(default="cpu", metadata=NOT_A_RESULT)
    # torch intra-op threads; 0 = leave torch's default
    threads: int = field(default=0, metadata={**NOT_A_RESULT, **between(0, MAX_THREADS)})
    # With several processes (torchrun): batch normalisation over the global batch instead of each process's share
    # (engine/sync_norm.py), so N processes train as one; no effect with one process
    sync_norm: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    eval: EvalConfig = field(default_factory=EvalConfig, metadata=NOT_A_RESULT)
    log: LogConfig = field(default_factory=LogConfig, metadata=NOT_A_RESULT)  # what is recorded, not computed


# ----------------------------------------------------------------------------------------------------------
# Building a checked Config (the override machinery itself is config/overrides.py)


def build_config(
    config_file: str | Path | None = None,
    sets: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> Config:
    """Defaults, then `base` (e.g. a checkpoint's config), then the YAML file, then each ``--set`` in order."""
    config = Config()
    if base:
        apply_overrides(config, base)
    if config_file:
        apply_overrides(config, load_config_file(config_file))
    for text in sets or []:
        apply_overrides(config, parse_set_option(text))
    validate(config, METHOD_NAMES)
    return config


def marked_keys(marker: str, value: Any = True, node: type = Config) -> tuple[tuple[str, ...], ...]:
    """Paths of the config fields whose metadata holds `marker` = `value` (e.g. ("result", False))."""
    paths: list[tuple[str, ...]] = []
    hints = typing.get_type_hints(node)
    for spec in dataclasses.fields(node):
        if spec.metadata.get(marker, not value) == value:
            paths.append((spec.name,))
        elif dataclasses.is_dataclass(hints[spec.name]):
            paths += [(spec.name, *rest) for rest in marked_keys(marker, value, hints[spec.name])]
    return tuple(paths)


def with_overrides(config: Config, overrides: dict[str, Any] | None = None, sets: list[str] | None = None) -> Config:
    """A checked copy of `config` with nested `overrides` ({"model": {"temporal": False}}) and `--set` texts applied."""
    return build_config(base=merged_overrides(config_to_dict(config), overrides or {}), sets=sets)


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain dict (tuples become lists) for YAML/JSON; feeding it back to build_config gives the same config."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_to_yaml(config: Config) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
