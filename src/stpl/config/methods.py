"""The options of the individual adaptation methods (adapt.ur, adapt.hcl, adapt.tps, adapt.davsn, adapt.cotta,
adapt.uda) and of online adaptation (adapt.online): plain dataclasses that `config.AdaptConfig` holds, kept here so
the schema module stays about the run as a whole."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from stpl.config.ranges import at_least, between, interval, not_negative, positive, positive_list


@dataclass
class UrConfig:
    """UR baseline (adapt/ur.py); defaults from the authors' released command line and argument defaults."""

    # auxiliary decoders, each reading dropout-perturbed encoder features
    decoders: int = field(default=4, metadata=at_least(1))
    # UR's feature noise: Dropout2d probability before each auxiliary decoder
    dropout: float = field(default=0.5, metadata=between(0, 1, high_open=True))
    # cross-entropy on the frozen source model's class-balanced pseudo-labels
    lambda_pl: float = field(default=1.0, metadata=not_negative())
    # entropy of the prediction, normalised by log K
    lambda_entropy: float = field(default=1.0, metadata=not_negative())
    # auxiliary decoders pulled towards the main prediction (softmax MSE)
    lambda_consistency: float = field(default=0.1, metadata=not_negative())
    # per-class share kept as pseudo-labels (CRST's initial target portion, as UR)
    class_fraction: float = field(default=0.2, metadata=between(0, 1, low_open=True))
    # the fresh auxiliary decoders learn 10x faster, as released
    decoder_lr_scale: float = field(default=10.0, metadata=positive())
    freeze_classifier: bool = True  # class-score layers fixed, so entropy cannot fall by rescaling logits


@dataclass
class HclConfig:
    """HCL baseline (adapt/hcl.py); defaults from the authors' released segmentation code unless noted."""

    # the historical model is this EMA of the adapted model
    momentum: float = field(default=0.996, metadata=between(0, 1, high_open=True))
    temperature: float = field(default=0.07, metadata=positive())  # τ of the historical contrastive (HisNCE) loss
    # feature pixels sampled per batch as instances (ours; the cost grows with its square)
    pixels: int = field(default=256, metadata=at_least(2))
    lambda_instance: float = field(default=0.5, metadata=not_negative())  # HCID weight
    # HCCD weight (consistency-weighted pseudo-label cross-entropy)
    lambda_category: float = field(default=1.0, metadata=not_negative())


@dataclass
class TpsConfig:
    """TPS source-free baseline (adapt/tps.py)."""

    # LAMBDA_T of the release: weight of the cross-frame pseudo-label loss
    lambda_tps: float = field(default=0.5, metadata=not_negative())
    # random rescale of the student's view (release, VIPER config)
    scale_range: tuple[float, ...] = field(default=(0.8, 1.2), metadata=interval(optional=False))
    # photometric_augment strength of the student's view (approximates TPS's jitter)
    augmentation: float = field(default=2.0, metadata=between(0, 2))


@dataclass
class DavsnConfig:
    """DA-VSN source-free baseline (adapt/davsn.py)."""

    # release: 0.001 beside a source loss of 1; alone it only rescales the lr
    lambda_itcr: float = field(default=1.0, metadata=not_negative())


@dataclass
class CottaConfig:
    """CoTTA (adapt/cotta.py), the continual test-time adaptation baseline."""

    # the mean teacher (CoTTA: 0.999)
    ema_momentum: float = field(default=0.999, metadata=between(0, 1, high_open=True))
    threshold: float = 0.9  # below this mean source confidence, pseudo-labels average augmented copies
    # the copies' scales, each also mirrored (CoTTA: 0.5-2.0, 7 scales)
    scales: tuple[float, ...] = field(default=(0.75, 1.0, 1.5), metadata=positive_list())
    # each weight back to its source value with this probability per step
    restore_probability: float = field(default=0.01, metadata=between(0, 1))


@dataclass
class UdaConfig:
    """The domain-adaptation baselines that train with labelled source data (adapt/uda/): what the originals
    use, scaled to our protocols (docs/uda.md says where each value comes from)."""

    # weight of the supervised source cross-entropy (1 in every original)
    lambda_source: float = field(default=1.0, metadata=not_negative())
    # How source pairs are normalised: "own" batch statistics (domain-specific; the stored, target ones untouched)
    # or the "shared" stored statistics the target frames use (as the originals' frozen batch-norm does for both);
    # "default": each method's own choice (SourceSupervised.default_source_statistics), made on held-out frames
    source_statistics: Literal["default", "own", "shared"] = "default"
    # FDA: band of the amplitude spectrum swapped, b = floor(beta * min(H, W)); target entropy weight and
    # Charbonnier exponent (release: LB 0.01 in its recipe, entW 0.005, ita 2.0)
    fda_beta: float = field(default=0.01, metadata=between(0, 0.5, high_open=True))
    fda_lambda_entropy: float = field(default=0.005, metadata=not_negative())
    fda_eta: float = field(default=2.0, metadata=positive())
    # FDA's self-training round as an option: pseudo-labels of the frozen starting model, per-class thresholds at
    # the 66th percentile of the class's confidences over the adaptation set, capped at 0.9 (release)
    fda_self_training: bool = False
    # PixMatch: consistency weight (lam_aug 0.1) and the perturbation: a random zoom-and-crop in this range
    # (the release's resized crop of 0.2-1 of the area is a zoom of 1-2.2) and photometric noise of this strength
    pixmatch_lambda: float = field(default=0.1, metadata=not_negative())
    pixmatch_scale_range: tuple[float, ...] = field(default=(1.0, 2.0), metadata=interval())
    pixmatch_augmentation: float = field(default=1.0, metadata=between(0, 2))
    # RDA: the spectrum in `rda_bands` concentric bands per colour channel; bands rda_semantic_bands[0]..[1]
    # (inclusive) carry the content and are never touched; of the rest, the share rda_share of all components
    # whose swap to another domain's amplitude raises the loss most is swapped (release: 32 bands, 10 %, 2-15)
    rda_bands: int = field(default=32, metadata=at_least(2))
    rda_semantic_bands: tuple[int, ...] = (2, 15)
    rda_share: float = field(default=0.1, metadata=between(0, 1, low_open=True))
    # weight of the target self-training term on attacked frames
    rda_lambda_target: float = field(default=1.0, metadata=not_negative())
    # DA-VSN and VAT-VST: adversarial weight of each discriminator's fooling loss (lamda_u 0.001)
    lambda_adversarial: float = field(default=0.001, metadata=not_negative())
    # DA-VSN's intra-domain temporal consistency beside the source loss
    davsn_lambda_itcr: float = field(default=0.001, metadata=not_negative())
    # VAT-VST: the share of the steps in phase 1 (source + video adversarial training); phase 2 self-trains on
    # target pseudo-labels of the phase-1 model, ensembled over frame t and the earlier frame warped to t
    vatvst_vat_share: float = field(default=0.5, metadata=between(0, 1))


@dataclass
class OnlineConfig:
    """Online (test-time) adaptation while predicting (online.py): `stpl predict --adapt online`, and the
    `*-online` methods of `stpl bench`, which adapt over the evaluation split in order."""

    # the update batch: the last `window` pairs up to and including frame t
    window: int = field(default=8, metadata=at_least(1))
    steps: int = field(default=1, metadata=at_least(1))  # update steps before each prediction
    # update before every N-th frame only (the others are predicted with the current weights)
    every: int = field(default=1, metadata=at_least(1))
    # `stpl predict --fps`: a camera's frame rate to keep up with; of the frames `every` allows, an update is taken
    # only when it fits the time a camera delivering this many frames a second leaves (online.UpdatePacer; every
    # frame is predicted either way). 0 = no target: every `every`-th frame updates. Benches score a fixed `every`.
    fps: float = field(default=0.0, metadata=not_negative())
    episodic: bool = False  # reset to the starting weights before each update (no memory across windows)
    # back to the starting weights (and a fresh teacher and optimiser) when the label-free health signals read as
    # collapsed (engine/frame_health.py: the last min(10, half the frames so far) frames one class or certain)
    reset_on_collapse: bool = False
    # after each update step, each element of each trained weight goes back to its starting value with this
    # probability (CoTTA's stochastic restore, for any method: a pull towards the source model that never stops)
    restore_probability: float = field(default=0.0, metadata=between(0, 1))
    # this many earlier pairs of the stream (before the window), drawn at random, join each update's batch: a
    # replay of what the stream showed before, against forgetting it (0 = the window alone)
    replay: int = 0
    # "stream": a method with settings chosen on held-out streams adapts with them (online.STREAM_RECIPES; stpl:
    # pseudo-labels from the temporal ensemble, twice the learning rate, frame statistics 1; docs/online.md; they
    # replace what is set for those keys); "offline": adapt.* as set
    recipe: Literal["stream", "offline"] = "stream"
    # how far each update moves the stored batch-norm statistics towards the window's when they follow the stream
    # (norm=update); 0 = the layers' own momentum (0.1); norm-online uses adapt.norm_ema_momentum instead
    norm_momentum: float = field(default=0.0, metadata=between(0, 1))
    # after each update, the stored batch-norm statistics move this share of the way back to the starting (source)
    # ones: statistics that follow the stream with a source prior (0 = off)
    norm_source_prior: float = field(default=0.0, metadata=between(0, 1))
    # when predicting (the model's and its teachers'), each batch-norm layer normalises a frame by this share of
    # the frame's own statistics and the rest of the stored ones: no lag after a change of conditions
    # (adapt/frame_statistics.py; 0 = the stored statistics alone, 1 = the frame's alone)
    frame_statistics: float = field(default=0.0, metadata=between(0, 1))
    # the label-free guard (online.EstimateGuard): after every `guard_window` frames, the temporal estimate of the
    # model's predictions of those frames is compared with those of two frozen copies of the starting model (its
    # weights before any update) on the same frames, one with the stored batch-norm statistics and one with each
    # frame's own (frame_statistics, or 1 when that is 0); when it is lower than the better copy's by more than
    # `guard_margin` points the model goes back to the starting weights with that copy's normalisation. Costs two
    # more predictions per frame (one for a model without batch norm).
    guard: bool = False
    guard_window: int = field(default=16, metadata=at_least(2))
    guard_margin: float = field(default=1.0, metadata=not_negative())
    # after two windows in a row in which the adapting model fell below a starting copy, no update for this many
    # frames: the model predicts as that copy, then adapts again (0 = never hold). Adapting that keeps failing on
    # a stream is not retried at every window.
    guard_hold: int = field(default=64, metadata=not_negative())
    # "choose": the way back is the better of the two starting copies (stored statistics, or each frame's own);
    # "keep": only the copy that normalises as the model does (the normalisation is never switched)
    guard_normalisation: Literal["choose", "keep"] = "choose"
