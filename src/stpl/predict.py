"""Prediction on one's own video: class maps for every frame, overlays at the frame's size, a legend, a video.

    predictor = stpl.load("model.safetensors")
    masks = predictor.predict(frames)               # list of uint8 RGB frames -> list of [H,W] class-id maps
    mask = predictor.predict(frame)                 # one [H,W,3] frame -> one map (no earlier frame: no flow)
    predictor.predict_video("clip.mp4", out="pred") # pred/masks/*.png, pred/overlay/*.png, pred/overlay.mp4

Frames are resized to the model's size; flow to the earlier frame is computed on the fly (DIS), and the earlier
frame's encoder output is kept from the step before, so a temporal model runs one encoder pass per frame. Masks
come back at each frame's own size.

The output folder is written as a unit (output_folder.py): a failed run leaves the previous prediction whole, and
predict.json always describes the files beside it.
"""

from __future__ import annotations

import hashlib
import os
import resource
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from stpl.analysis.label_free import StreamScores
from stpl.atomic import write_json
from stpl.config import build_config
from stpl.data.frames import FrameSource, nothing_selected, open_frames
from stpl.data.pairs import PairDataset, normalize
from stpl.data.palettes import palette_for
from stpl.engine.checkpoint import load_checkpoint
from stpl.engine.checkpoint_model import checkpoint_settings, model_for_checkpoint, model_from_checkpoint
from stpl.engine.frame_health import FrameHealth, HealthLog, frame_health
from stpl.errors import StplError
from stpl.flow.dis import PRESETS, DISFlow
from stpl.media import OverlayVideo, colour_overlay, legend_picture, write_png
from stpl.models import VideoSegmenter
from stpl.models.inference import inference_copy
from stpl.models.segmenter import SegmenterOutput, upsample
from stpl.online import OnlineAdapter, UpdatePacer, stream_recipe
from stpl.output_folder import written_whole
from stpl.pretrained import resolve_checkpoint
from stpl.progress import Progress
from stpl.version import __version__
from stpl.workflows import setup_runtime


@dataclass
class FramePrediction:
    name: str
    classes: np.ndarray  # [H,W] uint8 class ids at the frame's own size
    probabilities: np.ndarray | None = None  # [K,H,W] float32, when asked for
    health: FrameHealth | None = None  # label-free signals of the prediction (engine/frame_health.py)


class Predictor:
    """A checkpoint ready to predict frames in order (each frame's earlier frame is the one before it)."""

    def __init__(
        self,
        model: VideoSegmenter,
        class_names: list[str],
        size: tuple[int, int],
        temporal: bool = True,
        device: str = "cpu",
        flow_preset: str = "medium",
        palette: list[tuple[int, int, int]] | None = None,
        flow_scale: float = 1.0,
        checkpoint: dict[str, str] | None = None,
    ):
        self.model = model.to(device).eval()
        self.class_names = list(class_names)
        self.size = size  # (height, width) the model was trained at
        self.temporal = temporal
        self.device = torch.device(device)
        self.flow = _flow_estimator(flow_preset, flow_scale, size, temporal)
        self.palette = palette or palette_for(class_names)
        self.checkpoint = checkpoint  # {"path", "sha256", "stpl_version"} of the model, for predict.json
        self.scores: StreamScores | None = None  # the label-free estimate of the video being predicted
        self.pacer: UpdatePacer | None = None  # online: which frames drove an update (stream_online)

    def _score(self, output: SegmenterOutput, has_earlier: bool) -> None:
        """Add a prediction to the label-free estimate of the current video (a temporal model's own)."""
        if self.scores is not None and self.temporal:
            self.scores.add(output, None, has_earlier)

    def _resize(self, frame: Any, index: int) -> np.ndarray:
        return cv2.resize(_frame_array(frame, index), (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)

    @torch.no_grad()
    def stream(
        self, frames: Iterable[np.ndarray | tuple[str, np.ndarray]], probabilities: bool = False
    ) -> Iterator[FramePrediction]:
        """Predict frames in order, one at a time (a generator: memory does not grow with the video)."""
        earlier: tuple[np.ndarray, torch.Tensor, tuple[torch.Tensor, torch.Tensor]] | None = None
        for index, item in enumerate(frames):
            name, frame = item if isinstance(item, tuple) else (f"frame{index:06d}", item)
            small = self._resize(frame, index)
            current = normalize(torch.from_numpy(small).permute(2, 0, 1)[None]).to(self.device)
            encoded = self.model.encode_frame(current)  # the one encoder pass of this frame
            if self.temporal and earlier is not None:
                flow = torch.from_numpy(self.flow(small, earlier[0])).permute(2, 0, 1)[None].to(self.device)
                previous, previous_encoded = earlier[1], earlier[2]
            else:  # the first frame pairs with itself, as in training; the no-temporal model always does
                flow = torch.zeros(1, 2, *self.size, device=self.device)
                previous, previous_encoded = current, encoded
            output = self.model(current, previous, flow, previous_encoded=previous_encoded, current_encoded=encoded)
            health = frame_health(output, has_earlier=self.temporal and earlier is not None)
            self._score(output, has_earlier=earlier is not None)
            earlier = (small, current, encoded)
            logits = upsample(output.logits, frame.shape[:2])[0]
            classes = class_map(logits)
            probs = logits.softmax(dim=0).cpu().numpy() if probabilities else None
            yield FramePrediction(name, classes, probs, health)

    def stream_online(
        self, frames: Iterable[np.ndarray | tuple[str, np.ndarray]], adapter: OnlineAdapter
    ) -> Iterator[FramePrediction]:
        """Predict frames in order while adapting (online.py): before frame t (every adapt.online.every-th),
        `adapter` updates on the pairs of the last adapt.online.window frames up to t; nothing later is seen."""
        window = adapter.options.window
        pacer = self.pacer = UpdatePacer(adapter.options.every, adapter.options.fps)
        recent: list[tuple[str, np.ndarray, np.ndarray]] = []  # (name, resized frame, flow to the one before)
        for index, item in enumerate(frames):
            name, frame = item if isinstance(item, tuple) else (f"frame{index:06d}", item)
            small = self._resize(frame, index)
            if self.temporal and recent:
                flow = self.flow(small, recent[-1][1])
            else:
                flow = np.zeros((*self.size, 2), np.float32)
            recent = [*recent, (name, small, flow)][-(window + 1) :]  # one more: the earliest pair's earlier frame
            pairs = [(i, i - 1 if self.temporal and i > 0 else i) for i in range(len(recent))]
            if len(recent) > window:
                pairs = pairs[1:]  # the oldest frame only serves as an earlier frame
            dataset = PairDataset(
                np.stack([r[1] for r in recent]), np.asarray(pairs, dtype=np.int64),
                np.stack([recent[c][2] if c != p else np.zeros_like(recent[c][2]) for c, p in pairs]),
                None, self.class_names, [r[0] for r in recent],
            )  # fmt: skip
            if pacer.before_frame(index):
                started = time.perf_counter()
                adapter.update(dataset.batch(list(range(len(dataset)))).to(self.device))
                pacer.updated_for(index, time.perf_counter() - started)
            current = dataset.batch([len(dataset) - 1]).to(self.device)
            output = adapter.predict(current)
            # may reset after a collapse, or when the guard finds the model below a copy of its starting weights
            adapter.observe(output, self.temporal and len(recent) > 1, current)
            self._score(output, has_earlier=self.temporal and len(recent) > 1)
            logits = upsample(output.logits, frame.shape[:2])[0]
            yield FramePrediction(name, class_map(logits), health=adapter.health.frames[-1])

    def predict(self, frames: Iterable[np.ndarray] | np.ndarray, probabilities: bool = False) -> Any:
        """Class-id maps [H,W] for frames given in order (a list or any iterable of uint8 RGB [H,W,3] arrays, or a
        [T,H,W,3] array); with `probabilities`, (map, [K,H,W]) pairs. A single [H,W,3] array gives a single map (or
        pair), predicted as a first frame: with no earlier frame, it pairs with itself."""
        _refuse_non_frames(frames)
        single = isinstance(frames, np.ndarray) and frames.ndim == 3
        results = list(self.stream([frames] if single else frames, probabilities))
        answers = [(r.classes, r.probabilities) if probabilities else r.classes for r in results]
        return answers[0] if single else answers

    def overlay(self, frame: np.ndarray, classes: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """The frame blended with its class colours, at the frame's own size (the colours are in `legend()`)."""
        return colour_overlay(frame, classes, self.palette, alpha)

    def legend(self) -> np.ndarray:
        """Every class's colour and name, one row each (RGB), for legend.png beside the overlays."""
        return legend_picture(self.class_names, self.palette)

    def predict_video(
        self,
        path: str | Path,
        out: str | Path,
        stride: int = 1,
        start: int = 0,
        end: int | None = None,
        adapter: OnlineAdapter | None = None,
    ) -> dict[str, Any]:
        """Predict a folder of images or a video file into `out`: masks/*.png (class ids), overlay/*.png,
        overlay.mp4 (at the input's frame rate and size), legend.png (the class colours) and predict.json (frames,
        seconds, frames per second, checkpoint). With an `adapter`, the model adapts online while it predicts
        (`stream_online`). `out` is replaced as a unit once every file is written: a failure leaves an earlier
        prediction there whole, and no old file stays."""
        source = open_frames(path, stride, start, end)
        with written_whole(out, PREDICTION_FILES) as folder:  # also the lock: one writer per output folder
            return self._predict_into(source, path, folder, adapter)

    def _predict_into(
        self, source: FrameSource, path: str | Path, out: Path, adapter: OnlineAdapter | None
    ) -> dict[str, Any]:
        (out / "masks").mkdir()
        (out / "overlay").mkdir()
        write_png(out / "legend.png", cv2.cvtColor(self.legend(), cv2.COLOR_RGB2BGR))
        video = OverlayVideo(out / "overlay.mp4", source.fps())
        frames_in: list[np.ndarray] = []
        sizes: set[tuple[int, int]] = set()
        health, names = HealthLog(), []
        self.scores = StreamScores(len(self.class_names))
        count, started = 0, time.perf_counter()
        progress = Progress("predict", max(source.count(), 1), every_seconds=5.0)

        def remember(items: Iterable[tuple[str, np.ndarray]]) -> Iterator[tuple[str, np.ndarray]]:
            for item in items:
                frames_in.append(item[1])  # the frame the prediction overlays (one at a time)
                yield item

        try:
            predictions = (
                self.stream(remember(source)) if adapter is None else self.stream_online(remember(source), adapter)
            )
            for prediction in predictions:
                frame = frames_in.pop(0)
                write_png(out / "masks" / f"{prediction.name}.png", prediction.classes)
                picture = self.overlay(frame, prediction.classes)
                write_png(out / "overlay" / f"{prediction.name}.png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
                video.add(picture)
                sizes.add(frame.shape[:2])
                if prediction.health is not None:
                    health.add(prediction.health)
                    names.append(prediction.name)
                count += 1
                progress.update(count)
        finally:
            video.close()
        if count == 0:  # a video whose header gave no frame count, read past its end
            raise nothing_selected(source)
        video.check()
        seconds = time.perf_counter() - started
        summary = {
            "input": str(path), "frames": count, "seconds": seconds, "frames_per_second": count / max(seconds, 1e-9),
            "input_fps": source.fps(), "frame_sizes": [list(size) for size in sorted(sizes)],
            "overlay_video_size": list(video.size or ()), "checkpoint": self.checkpoint,
            "classes": self.class_names, "palette": [list(c) for c in self.palette], "temporal": self.temporal,
            "online": None if adapter is None else {"method": adapter.config.method, **vars(adapter.options)},
            "health": {"summary": health.summary(), "per_frame": health.per_frame(names)},
            "estimate": self._estimate(),
        }  # fmt: skip
        if adapter is not None:  # the frames after which a collapse or the guard sent the model back to its start
            summary["online"]["resets_after"] = [names[index] for index in adapter.resets]
            summary["online"]["holds_after"] = [names[index] for index in adapter.holds]  # the guard paused adapting
            # which frames drove an update, what the frame-rate target skipped, and the memory it took
            if self.pacer is not None:
                summary["online"].update(self.pacer.summary(count))
                summary["online"]["updated_frames"] = [names[i] for i in self.pacer.updated if i < len(names)]
            summary["online"]["peak_memory_mib"] = peak_memory_mib()
            if adapter.guard is not None:  # each window's estimates: the adapted model's, its starting copies'
                summary["online"]["guard_checks"] = adapter.guard.checks
        write_json(out / "predict.json", summary)
        progress.done(f"{count} frames, {summary['frames_per_second']:.1f} frames/s")
        return summary

    def _estimate(self) -> dict[str, Any] | None:
        """The video's label-free estimate (docs/label_free.md), every class counting: compare it between models
        on the same video. None for a model that predicts frames alone (no flow, no temporal consistency)."""
        if self.scores is None or not self.temporal:
            return None
        result = self.scores.result()
        return {"estimate": result["estimate"], "parts": result["parts"]}


def peak_memory_mib() -> float:
    """The process's peak resident memory so far, in MiB (Linux reports kibibytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


PREDICTION_FILES = ("masks", "overlay", "overlay.mp4", "legend.png", "predict.json")


def _frame_array(frame: Any, index: int) -> np.ndarray:
    """`frame` when it is a uint8 RGB [H,W,3] array, else one line saying what was given and what to pass."""
    if _is_pil_image(frame):
        raise StplError(f"frame {index} is a PIL image: pass np.asarray(image.convert('RGB')) (uint8 RGB [H,W,3])")
    if isinstance(frame, str | os.PathLike):
        raise StplError(
            f"frame {index} is a path ({frame}): pass uint8 RGB arrays, or use predict_video(path, out) for a video "
            "file or a folder of images"
        )
    if not isinstance(frame, np.ndarray):
        raise StplError(f"frame {index} is a {type(frame).__name__}: frames must be uint8 RGB arrays [H,W,3]")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise StplError(
            f"frames must be uint8 RGB arrays [H,W,3], got {frame.dtype} {list(frame.shape)} (frame {index})"
        )
    return frame


def _refuse_non_frames(frames: Any) -> None:
    """A clear line for what `predict` cannot take as a sequence of frames (a path, one PIL image)."""
    if isinstance(frames, str | os.PathLike):
        raise StplError(
            f"predict takes frames (uint8 RGB arrays), not a path ({frames}): use predict_video(path, out) for a video "
            "file or a folder of images"
        )
    if _is_pil_image(frames):
        raise StplError("predict takes uint8 RGB arrays, not a PIL image: pass np.asarray(image.convert('RGB'))")
    if isinstance(frames, np.ndarray) and frames.ndim not in (3, 4):
        raise StplError(
            f"predict takes uint8 RGB frames: one [H,W,3] array, a [T,H,W,3] array or a list of [H,W,3] arrays, got "
            f"an array of shape {list(frames.shape)}"
        )


def _is_pil_image(value: Any) -> bool:
    # told apart by its class's module, so that PIL is never imported here
    return any(cls.__module__.split(".")[0] == "PIL" for cls in type(value).__mro__)


def _flow_estimator(preset: str, scale: float, size: tuple[int, int], temporal: bool) -> DISFlow:
    """The DIS estimator for the model's size; one line for a preset or scale DIS cannot run (a scale so small that
    the shrunk image has no room for DIS's patches crashes inside OpenCV)."""
    if preset not in PRESETS:
        raise StplError(f"unknown DIS preset '{preset}' (known: {', '.join(PRESETS)})")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0.0 < scale <= 1.0:
        raise StplError(f"flow scale must be a number in (0, 1], got {scale!r}")
    flow = DISFlow(preset, float(scale))
    height, width = size
    if temporal and not flow.accepts(height, width):
        lowest = flow.smallest_scale(height, width)
        small = "x".join(map(str, flow.working_size(height, width)))
        allowed = f"must be in [{lowest:g}, 1]" if lowest is not None else "cannot help: the model's size is too small"
        raise StplError(
            f"flow scale {scale:g} is too small for DIS (preset {preset}) at this model's size {height}x{width}: the "
            f"flow would run at {small} pixels; the flow scale {allowed}"
        )
    return flow


def class_map(logits: torch.Tensor) -> np.ndarray:
    """[K,H,W] logits -> [H,W] uint8 class ids. `max(dim=0).indices` picks the first maximum as argmax does, but
    CPU argmax over the outer dimension of a full-size map is ~5x slower (40 vs 8 ms at 11x360x480)."""
    return logits.max(dim=0).indices.to(torch.uint8).cpu().numpy()


def load(
    checkpoint: str | Path,
    device: str = "cpu",
    flow_preset: str | None = None,
    flow_scale: float | None = None,
    sets: list[str] | None = None,
) -> Predictor:
    """A `Predictor` for a checkpoint (a file, or a shipped model's name such as "camvid-day"); its model, size,
    classes and flow settings come from the file unless `flow_preset` / `flow_scale` are given (flow at half size
    makes streaming cheaper; docs/speed.md). `sets`: "key=value" settings over the checkpoint's data, flow and model
    sections, checked like every command's (e.g. "threads=1", "flow.dis_preset=fast"); the network stays the file's."""
    path = resolve_checkpoint(checkpoint)
    settings = build_config(sets=sets or [], base=checkpoint_settings(path))
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    checkpoint = load_checkpoint(path)
    model, config = model_for_checkpoint(checkpoint)
    return Predictor(
        inference_copy(model),  # norms folded, channels-last: about twice as fast on CPU (models/inference.py)
        checkpoint.class_names,
        (config.data.height, config.data.width),
        temporal=config.model.temporal,
        device=device,
        flow_preset=flow_preset or settings.flow.dis_preset,
        palette=checkpoint.meta.get("palette"),
        flow_scale=settings.flow.scale if flow_scale is None else flow_scale,
        checkpoint=_identity(path),
    )


def _identity(path: Path) -> dict[str, str]:
    """What predict.json says of the model: the checkpoint's path, the sha256 of its bytes, the stpl version."""
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "stpl_version": __version__}


def load_online(
    checkpoint: str | Path, method: str = "tent", sets: list[str] | None = None, device: str = "cpu"
) -> tuple[Predictor, OnlineAdapter]:
    """A predictor and the online adapter that updates its model: `method` and adapt.* settings (`sets`, e.g.
    "adapt.online.window=4") over the checkpoint's own data, flow and model settings."""
    path = resolve_checkpoint(checkpoint)
    config = build_config(sets=[f"adapt.method={method}", *(sets or [])], base=checkpoint_settings(path))
    config = stream_recipe(config)  # the method's settings chosen for streams, unless adapt.online.recipe=offline
    setup_runtime(config)
    saved = load_checkpoint(path)
    model = model_from_checkpoint(saved, config, skip_adaptation_modules=True).to(device)  # as `stpl adapt` builds it
    size = (config.data.height, config.data.width)
    predictor = Predictor(model, saved.class_names, size, config.model.temporal, device, config.flow.dis_preset,
                          saved.meta.get("palette"), config.flow.scale, _identity(path))  # fmt: skip
    return predictor, OnlineAdapter(predictor.model, config.adapt, config.seed)
