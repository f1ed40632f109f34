"""`stpl speed`: what a step, a frame and a flow field cost on this machine, and the ratios that matter.

Step times (median of timed steps after warm-up) of supervised training, self-training, STPL and STPL without
time on one batch at the model size; inference per frame of a single-frame model, a temporal model that encodes
both frames, and a temporal model streaming with the earlier frame's encoder output kept (flow at the config's
scale, and at half the model size), and the single-frame model exported to ONNX, run by onnxruntime on the CPU
(with the `export` extra; the same frames, resizing, normalisation and argmax as torch's row); DIS flow pairs per
second per preset at 480x360; `stpl predict` end to end with a shipped model (default camvid-day) on 480x360 PNG
frames, in frames per second; peak memory. The network is the default one with random weights (speed does not
depend on them) on generated inputs: no data set is read.
Writes OUT/results.json and OUT/results.md.
"""

from __future__ import annotations

import copy
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from stpl.adapt import build_method
from stpl.atomic import write_json, write_text
from stpl.config import Config, with_overrides
from stpl.data.pairs import PairBatch, normalize
from stpl.data.palettes import palette_for
from stpl.engine.loop import LoopSettings, build_optimizer, train_step
from stpl.engine.precision import Precision
from stpl.engine.supervised import Supervised
from stpl.errors import StplError
from stpl.export import OUTPUT, export_model, onnx_session, require_onnx
from stpl.flow.dis import PRESETS, DISFlow
from stpl.models import VideoSegmenter, build_model
from stpl.models.segmenter import upsample
from stpl.predict import Predictor, load_online
from stpl.predict import load as load_predictor
from stpl.progress import Progress

NUM_CLASSES = 11


def _finish() -> None:  # GPU work is asynchronous: time it to its end
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def median_seconds(run: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    return interleaved_median_seconds({"run": run}, repeats, warmup)["run"]


def interleaved_median_seconds(runs: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each run, timed in turns (a, b, c, a, b, c, ...) so that a slow spell of a shared machine
    falls on all of them alike and their ratios stay fair."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    _finish()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            _finish()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def panning_clip(count: int, height: int, width: int) -> list[np.ndarray]:
    """A textured image panning right by 2 pixels per frame (uint8 RGB)."""
    smooth = np.random.default_rng(0).integers(0, 255, (height // 4 + 1, (width + 2 * count) // 4 + 1, 3))
    wide = np.kron(smooth, np.ones((4, 4, 1))).astype(np.uint8)[:height]
    return [np.ascontiguousarray(wide[:, 2 * t : 2 * t + width]) for t in range(count)]


def pair_batch(config: Config, device: torch.device) -> PairBatch:
    frames = panning_clip(config.adapt.batch_size + 1, config.data.height, config.data.width)
    images = normalize(torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2))
    flow = torch.zeros(config.adapt.batch_size, 2, config.data.height, config.data.width)
    flow[:, 0] = -2.0
    labels = torch.randint(0, NUM_CLASSES, (config.adapt.batch_size, config.data.height, config.data.width))
    batch = PairBatch(images[1:], images[:-1], flow, labels, list(range(config.adapt.batch_size)))
    return batch.to(device)


def step_runner(config: Config, method_name: str, batch: PairBatch) -> Callable[[], Any]:
    """One training step of `method_name` on `batch` per call (a fresh network, a tiny learning rate)."""
    device = batch.current.device
    torch.manual_seed(0)
    model = build_model(NUM_CLASSES, **config.model.network_options(load_pretrained=False)).to(device)
    if method_name == "supervised":
        method = Supervised(model, config.train.lr, config.train.backbone_lr_scale)
        train = config.train
        settings = LoopSettings(iterations=1, momentum=train.momentum, weight_decay=train.weight_decay, log_every=1,
                                checkpoint_every=1, label="speed", optimizer=train.optimizer)  # fmt: skip
    else:
        overrides = {"adapt": {"method": "stpl" if method_name.startswith("stpl") else method_name}}
        if method_name == "stpl-notemporal":
            overrides["model"] = {"temporal": False}
        adapt_config = with_overrides(config, overrides).adapt
        method = build_method(model, adapt_config, seed=0)
        settings = LoopSettings(iterations=1, momentum=adapt_config.momentum, weight_decay=adapt_config.weight_decay,
                                log_every=1, checkpoint_every=1, label="speed")  # fmt: skip
    if method_name == "stpl-notemporal":  # the control's pairs: frame t with itself, zero flow
        batch = PairBatch(batch.current, batch.current, torch.zeros_like(batch.flow), batch.label, batch.index)
    optimizer = build_optimizer(settings, method.param_groups())
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * 1e-3  # small: the timing must not depend on a diverging run
    step = iter(range(10**6))
    amp = config.train.amp if method_name == "supervised" else config.adapt.amp
    precision = Precision(amp, device)
    return lambda: train_step(method, optimizer, batch, next(step), precision=precision)


def inference_seconds(config: Config, device: torch.device, frames: int, repeats: int) -> dict[str, float]:
    size = (config.data.height, config.data.width)
    torch.manual_seed(0)
    model = build_model(NUM_CLASSES, **config.model.network_options(load_pretrained=False)).to(device).eval()
    classes = [f"class{i}" for i in range(NUM_CLASSES)]
    clip = panning_clip(frames, *size)
    preset, palette = config.flow.dis_preset, palette_for(classes)
    streaming = Predictor(model, classes, size, True, str(device), preset, palette, config.flow.scale)
    streaming_half_flow = Predictor(model, classes, size, True, str(device), preset, palette, 0.5)
    single = Predictor(model, classes, size, False, str(device), preset, palette)
    flow = DISFlow(preset, config.flow.scale)

    @torch.no_grad()
    def uncached() -> None:  # both frames through the encoder at every step
        for previous, current in zip([clip[0], *clip[:-1]], clip, strict=True):
            field = torch.from_numpy(flow(current, previous)).permute(2, 0, 1)[None].to(device)
            images = [normalize(torch.from_numpy(f).permute(2, 0, 1)[None]).to(device) for f in (current, previous)]
            logits = model(images[0], images[1], field).logits
            upsample(logits, size)[0].argmax(dim=0).cpu()  # what the predictor does with its logits too

    runs = {
        "single-frame": lambda: single.predict(clip),
        "temporal-uncached": uncached,
        "temporal-cached": lambda: streaming.predict(clip),
        "temporal-cached-half-flow": lambda: streaming_half_flow.predict(clip),
    }
    onnx_predict = onnxruntime_single_frame(model, size, classes)
    if onnx_predict is not None:
        runs[ONNX_ROW] = lambda: onnx_predict(clip)
    return {name: seconds / frames for name, seconds in interleaved_median_seconds(runs, repeats).items()}


ONNX_ROW = "single-frame-onnxruntime-cpu"


def onnxruntime_single_frame(
    model: VideoSegmenter, size: tuple[int, int], classes: list[str]
) -> Callable[[list[np.ndarray]], list[np.ndarray]] | None:
    """Class maps of frames through `model` exported to ONNX and run by onnxruntime (CPU, torch's thread count),
    frame by frame as the torch predictor works; None, with a note, where the `export` extra is not installed."""
    try:
        require_onnx()
    except StplError as err:
        print(f"[speed] no onnxruntime row: {err}", flush=True)
        return None
    with tempfile.TemporaryDirectory() as folder:  # the session holds the graph: the file is not needed after
        exported = export_model(copy.deepcopy(model).cpu(), Path(folder) / "model.onnx", size, classes)
        session = onnx_session(exported.path, torch.get_num_threads())

    def predict(frames: list[np.ndarray]) -> list[np.ndarray]:
        maps = []
        for frame in frames:
            small = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            image = normalize(torch.from_numpy(small).permute(2, 0, 1)[None]).numpy()
            logits = session.run([OUTPUT], {exported.inputs[0]: image})[0]
            maps.append(logits[0].argmax(axis=0).astype(np.uint8))
        return maps

    return predict


def predict_frames_per_second(checkpoint: str | Path, frames: int, repeats: int) -> dict[str, Any]:
    """End to end, as `stpl predict --ckpt CHECKPOINT --input FOLDER --out OUT` works: a folder of 480x360 PNG frames
    read, resized, flow, the model, class maps at 480x360, mask and overlay PNGs, overlay.mp4 and predict.json
    written; frames per second over the whole pass (median of `repeats`)."""
    predictor = load_predictor(checkpoint, sets=[f"threads={torch.get_num_threads()}"])
    with tempfile.TemporaryDirectory() as folder:
        clip_folder = Path(folder) / "clip"
        clip_folder.mkdir()
        for index, frame in enumerate(panning_clip(frames, 360, 480)):
            cv2.imwrite(str(clip_folder / f"{index:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        out = Path(folder) / "predictions"
        seconds = median_seconds(lambda: predictor.predict_video(clip_folder, out), repeats)
    return {"checkpoint": str(checkpoint), "frames": frames, "size": [360, 480], "frames_per_s": frames / seconds}


def online_frames_per_second(
    checkpoint: str | Path, methods: list[str], frames: int, fps: float
) -> dict[str, dict[str, Any]]:
    """`stpl predict --adapt online --method M` end to end on the same 480x360 PNG frames, every frame updating and
    with the frame-rate target `fps` (--fps): frames per second over one pass (a pass is itself a mean over
    `frames` frames; each starts from the checkpoint), the updates taken and the interval they came to."""
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as folder:
        clip_folder = Path(folder) / "clip"
        clip_folder.mkdir()
        for index, frame in enumerate(panning_clip(frames, 360, 480)):
            cv2.imwrite(str(clip_folder / f"{index:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        for method in methods:
            for name, sets in (("every frame", []), (f"--fps {fps:g}", [f"adapt.online.fps={fps}"])):
                predictor, adapter = load_online(checkpoint, method, [f"threads={torch.get_num_threads()}", *sets])
                summary = predictor.predict_video(clip_folder, Path(folder) / "predictions", adapter=adapter)
                online = summary["online"]
                rows[f"{method}, {name}"] = {"frames_per_s": summary["frames_per_second"],
                                             "updates": online["updates"], "update_interval": online["update_interval"],
                                             "update_seconds": online["update_seconds"]}  # fmt: skip
    return rows


def flow_pairs_per_second(pairs: int) -> dict[str, float]:
    clip = panning_clip(pairs + 1, 360, 480)
    rates = {}
    for preset in PRESETS:
        estimator = DISFlow(preset)
        seconds = median_seconds(lambda e=estimator: [e(clip[t + 1], clip[t]) for t in range(pairs)], 3)
        rates[preset] = pairs / seconds
    return rates


def run_speed(
    config: Config,
    out: Path,
    repeats: int = 5,
    frames: int = 20,
    predict_checkpoint: str | Path = "camvid-day",
    online_methods: list[str] | None = None,
    online_fps: float = 15.0,
) -> dict[str, Any]:
    device = torch.device(config.device)
    batch = pair_batch(config, device)
    methods = ("supervised", "self-training", "stpl", "stpl-notemporal")
    progress = Progress("speed", 4, every_seconds=0.0)
    steps = interleaved_median_seconds({name: step_runner(config, name, batch) for name in methods}, repeats)
    progress.update(1, ", ".join(f"{name} step {seconds:.3f} s" for name, seconds in steps.items()))
    inference = inference_seconds(config, device, frames, repeats)
    progress.update(2, "inference")
    flow = flow_pairs_per_second(20)
    progress.update(3, "flow")
    predict = predict_frames_per_second(predict_checkpoint, max(frames, 2), repeats)
    online = {}
    if online_methods:
        online = online_frames_per_second(predict_checkpoint, online_methods, max(frames, 2), online_fps)
    progress.done(f"predict {predict['frames_per_s']:.1f} frames/s")
    result = {
        "device": str(device), "threads": torch.get_num_threads(), "amp": config.adapt.amp,
        "size": [config.data.height, config.data.width], "batch_size": config.adapt.batch_size,
        "step_seconds": steps, "inference_seconds_per_frame": inference, "flow_pairs_per_s_480x360": flow,
        "peak_memory_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ratios": {
            "stpl/supervised": steps["stpl"] / steps["supervised"],
            "stpl/self-training": steps["stpl"] / steps["self-training"],
            "stpl/stpl-notemporal": steps["stpl"] / steps["stpl-notemporal"],
            "temporal-cached/single-frame": inference["temporal-cached"] / inference["single-frame"],
            "temporal-uncached/single-frame": inference["temporal-uncached"] / inference["single-frame"],
            "temporal-cached-half-flow/single-frame": (
                inference["temporal-cached-half-flow"] / inference["single-frame"]
            ),
            **({f"{ONNX_ROW}/single-frame": inference[ONNX_ROW] / inference["single-frame"]}
               if ONNX_ROW in inference else {}),
        },
        "flow_default_pairs_per_s": flow[config.flow.dis_preset], "predict": predict, "predict_online": online,
    }  # fmt: skip
    write_json(out / "results.json", result)
    write_text(out / "results.md", speed_table(result))
    return result


def speed_table(result: dict[str, Any]) -> str:
    lines = [
        f"# stpl speed ({result['device']}, {result['threads']} threads, batch {result['batch_size']} at "
        f"{result['size'][0]}x{result['size'][1]}, amp {result['amp']})",
        "",
        "| what | seconds |",
        "|---|---|",
        *(f"| {name} step | {seconds:.3f} |" for name, seconds in result["step_seconds"].items()),
        *(f"| {name} per frame | {s:.4f} |" for name, s in result["inference_seconds_per_frame"].items()),
        "",
        "| ratio | value |",
        "|---|---|",
        *(f"| {name} | {value:.2f} |" for name, value in result["ratios"].items()),
        "",
        "| DIS preset (480x360) | pairs/s |",
        "|---|---|",
        *(f"| {preset} | {rate:.0f} |" for preset, rate in result["flow_pairs_per_s_480x360"].items()),
        "",
        "| predict, end to end (480x360 PNG frames in; masks, overlays, video out) | frames/s |",
        "|---|---|",
        f"| `stpl predict --ckpt {result['predict']['checkpoint']}`, {result['predict']['frames']} frames | "
        f"{result['predict']['frames_per_s']:.1f} |",
    ]
    if result.get("predict_online"):
        lines += ["", "| predict online, end to end (same frames): `--method`, updates | frames/s | updates | "
                  "frames per update | s per update |", "|---|---|---|---|---|"]  # fmt: skip
        for name, row in result["predict_online"].items():
            interval = "–" if row["update_interval"] is None else f"{row['update_interval']:.1f}"
            cost = "–" if row["update_seconds"] is None else f"{row['update_seconds']:.2f}"
            lines.append(f"| {name} | {row['frames_per_s']:.1f} | {row['updates']} | {interval} | {cost} |")
    lines += ["", f"Peak memory {result['peak_memory_mib']:.0f} MiB."]
    return "\n".join(lines) + "\n"
