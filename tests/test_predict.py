"""Prediction on one's own frames: the CLI and the Python API on a tiny trained model and a generated clip."""

import json
import re
import shlex
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import stpl
from conftest import clip, write_folder
from stpl.cli import main
from stpl.data.frames import open_frames
from stpl.data.pairs import normalize
from stpl.engine.checkpoint import load_checkpoint
from stpl.errors import StplError
from stpl.flow.dis import DISFlow
from stpl.pretrained import resolve_checkpoint


def set_args(settings):
    return [arg for s in settings for arg in ("--set", s)]


def write_video(path: Path, frames: list[np.ndarray], codec: str, fps: float) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_predict_cli_writes_masks_overlays_video_and_summary(toy_checkpoint, tmp_path, capsys):
    frames = clip()
    folder = write_folder(tmp_path / "frames", frames)
    out = tmp_path / "pred"
    assert main(["predict", "--ckpt", str(toy_checkpoint), "--input", str(folder), "--out", str(out)]) == 0
    masks = sorted((out / "masks").glob("*.png"))
    assert [m.stem for m in masks] == [f"f{t:03d}" for t in range(5)]
    first = cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED)
    classes = load_checkpoint(toy_checkpoint).class_names
    assert first.shape == (41, 57) and first.dtype == np.uint8 and first.max() < len(classes)  # ids at frame size
    overlay = cv2.imread(str(out / "overlay" / "f000.png"))
    assert overlay.shape[:2] == (41, 57)  # the frame's own size; the colours are in legend.png
    legend = cv2.imread(str(out / "legend.png"))  # a row of 20 px per class
    assert legend is not None and legend.shape[0] == 20 * len(classes) + 8
    video = cv2.VideoCapture(str(out / "overlay.mp4"))  # the overlay video opens and holds every frame
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    video.release()
    summary = json.loads((out / "predict.json").read_text())
    assert summary["frames"] == 5 and summary["frames_per_second"] > 0 and len(summary["palette"]) == len(classes)
    # the API gives the same maps as the files (exact: PNG frames are lossless and both run the same stream code,
    # so the logits are bit-equal and no argmax tie can go either way)
    api = stpl.load(toy_checkpoint).predict(frames)
    assert all((a == cv2.imread(str(m), cv2.IMREAD_UNCHANGED)).all() for a, m in zip(api, masks, strict=True))


@pytest.mark.parametrize("flow_scale", [1.0, 0.5])
def test_streaming_with_the_cached_earlier_frame_equals_the_plain_video_forward(toy_checkpoint, flow_scale):
    predictor = stpl.load(toy_checkpoint, flow_scale=flow_scale)
    frames = clip(3)
    streamed = predictor.predict(frames, probabilities=True)
    height, width = predictor.size
    small = [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames]
    flow = torch.from_numpy(DISFlow("medium", flow_scale)(small[2], small[1])).permute(2, 0, 1)[None]

    def tensor(image):
        return normalize(torch.from_numpy(image).permute(2, 0, 1)[None])

    with torch.no_grad():
        logits = predictor.model(tensor(small[2]), tensor(small[1]), flow).logits
    expected = torch.nn.functional.interpolate(logits, size=(41, 57), mode="bilinear", align_corners=False)
    # The cached encoding is the same batch-of-1 pass, so this is bit-equal in practice; 1e-5 (~80 float32 ulps of
    # a probability <= 1) would still fail a wrong earlier frame or flow, which moves probabilities by ~1e-2.
    np.testing.assert_allclose(streamed[2][1], expected[0].softmax(dim=0).numpy(), atol=1e-5)


def test_a_video_file_is_read_with_stride_and_range(tmp_path):
    path = write_video(tmp_path / "clip.avi", clip(8, 48, 64), "MJPG", 12.0)
    source = open_frames(path, stride=2, start=1, end=7)
    names = [name for name, _ in source]
    assert names == ["frame000001", "frame000003", "frame000005"] and source.count() == 3
    assert source.fps() == pytest.approx(6.0)  # 12 / 2 in float64
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(StplError, match=r"cannot read .* as a video"):
        open_frames(tmp_path / "bad.mp4")


def test_bad_inputs_are_one_line(toy_checkpoint, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    for target, words in [(tmp_path / "none", "input not found"), (tmp_path / "empty", "no images"),
                          (tmp_path / "bad.mp4", "cannot read")]:  # fmt: skip
        capsys.readouterr()
        assert (
            main(["predict", "--ckpt", str(toy_checkpoint), "--input", str(target), "--out", str(tmp_path / "o")]) == 2
        )
        err = capsys.readouterr().err.strip()
        assert err.startswith("stpl: error:") and words in err and "\n" not in err
    with pytest.raises(StplError, match="uint8 RGB"):
        stpl.load(toy_checkpoint).predict([np.zeros((10, 10), np.float32)])


def quick_start_block(language: str) -> str:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    return re.search(rf"## Quick start.*?```{language}\n(.*?)```", readme, re.S).group(1)


def test_the_readme_python_lines_run_as_printed(tmp_path, monkeypatch):
    """The quick start's Python lines with the shipped camvid-day model; clip.mp4 and an adapted model (a copy of
    camvid-day) are given, and nothing else: the lines read the frames themselves."""
    frames = clip()
    monkeypatch.chdir(tmp_path)
    write_video(tmp_path / "clip.mp4", frames, "mp4v", 10.0)
    (tmp_path / "adapted").mkdir()
    shutil.copyfile(resolve_checkpoint("camvid-day"), tmp_path / "adapted" / "model.safetensors")
    namespace: dict = {}
    exec(quick_start_block("python"), namespace)
    assert len(namespace["frames"]) == 5 and namespace["frames"][0].dtype == np.uint8
    # RGB: the clip's red gradient rises to the right (conftest.clip writes it in channel 0 of RGB)
    decoded = namespace["frames"][0].astype(int)
    assert decoded[:, -10:, 0].mean() > decoded[:, -10:, 2].mean() + 50
    ranked = namespace["ranked"]
    assert [row["name"] for row in ranked["models"]] != [] and ranked["frames"] == 5
    assert ranked["models"][0]["estimate"] == pytest.approx(ranked["models"][1]["estimate"])  # the same weights
    assert namespace["mask"].shape == namespace["frames"][0].shape[:2] and namespace["mask"].max() < 11  # one map
    assert len(namespace["masks"]) == 5 and namespace["summary"]["frames"] == 5
    assert (tmp_path / "predictions" / "overlay.mp4").is_file()


def test_the_readme_quick_start_commands_run_as_printed(tmp_path, monkeypatch):
    """The four commands of the README's quick start, word for word, with the shipped camvid-day model on a
    generated clip.mp4; only the adaptation gets tiny settings appended (3 steps)."""
    commands = [shlex.split(line) for line in quick_start_block("bash").strip().splitlines()]
    assert [c[:2] for c in commands] == [
        ["stpl", "predict"],
        ["stpl", "adapt"],
        ["stpl", "predict"],
        ["stpl", "predict"],
    ]
    monkeypatch.chdir(tmp_path)
    write_video(tmp_path / "clip.mp4", clip(6), "mp4v", 10.0)
    for command in commands:
        extra = set_args(ADAPT_SETS) if command[1] == "adapt" else []
        assert main([*command[1:], *extra]) == 0, command
    for out in ("predictions", "adapted-predictions", "online"):
        summary = json.loads((tmp_path / out / "predict.json").read_text())
        assert summary["frames"] == 6 and len(list((tmp_path / out / "masks").glob("*.png"))) == 6
        assert cv2.VideoCapture(str(tmp_path / out / "overlay.mp4")).read()[0]
    choice = json.loads((tmp_path / "adapted" / "choice.json").read_text())  # --method auto: what it chose, and why
    assert set(choice["candidates"]) == {"source", "adabn", "self-training", "stpl"} and choice["reason"]
    chosen = Path(choice["candidates"][choice["chosen"]]["checkpoint"])
    assert (tmp_path / "adapted" / "model.safetensors").read_bytes() == chosen.read_bytes()


ADAPT_SETS = ["adapt.iterations=3", "adapt.batch_size=2", "adapt.log_every=1", "adapt.anchors_per_class=8"]


def test_adapt_on_a_folder_of_own_frames_then_eval_says_there_are_no_labels(toy_checkpoint, tmp_path, capsys):
    folder = write_folder(tmp_path / "frames", clip(6))
    out = tmp_path / "adapted"
    sets = ["data.dataset=frames", f"data.frames.path={folder}", "data.frames.stride=2", *ADAPT_SETS]
    args = ["adapt", "--source-ckpt", str(toy_checkpoint), "--out", str(out), *set_args(sets)]
    assert main(args) == 0  # no --config: data size, flow and model from the checkpoint
    adapted = load_checkpoint(out / "model.safetensors")
    assert adapted.class_names == load_checkpoint(toy_checkpoint).class_names
    assert adapted.config["data"]["height"] == 33 and adapted.config["data"]["frames"]["stride"] == 2
    capsys.readouterr()
    assert main(["eval", "--ckpt", str(out / "model.safetensors"), "--out", str(tmp_path / "e"), *set_args(sets)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stpl: error:") and "no labels" in err and "\n" not in err


def test_the_adapt_api_takes_arrays_and_gives_a_checkpoint_to_predict_with(toy_checkpoint, tmp_path):
    frames = clip(4)
    path = stpl.adapt_video(
        toy_checkpoint, frames, tmp_path / "adapted", method="tent", settings={"adapt.iterations": 2}
    )
    assert path.name == "model.safetensors" and load_checkpoint(path).meta["method"] == "tent"
    assert len(sorted((tmp_path / "adapted").glob("input_frames-*/*.png"))) == 4
    masks = stpl.load(path).predict(frames)
    assert len(masks) == 4 and masks[0].shape == (41, 57)
    with pytest.raises(StplError, match="uint8 RGB"):
        stpl.adapt_video(toy_checkpoint, [np.zeros((4, 4))], tmp_path / "bad")


def test_predict_adapting_online_on_own_frames(toy_checkpoint, tmp_path):
    folder = write_folder(tmp_path / "frames", clip(5))
    out = tmp_path / "pred"
    args = ["predict", "--ckpt", str(toy_checkpoint), "--input", str(folder), "--out", str(out), "--adapt", "online",
            "--method", "tent", "--set", "adapt.online.window=2", "--set", "adapt.lr=0.1"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "predict.json").read_text())
    assert summary["frames"] == 5 and summary["online"]["method"] == "tent" and summary["online"]["window"] == 2
    assert len(list((out / "masks").glob("*.png"))) == 5
    # the adapter's updates saw only frames up to the one predicted: windows of 1, 2, 2, 2, 2 pairs
    from stpl.predict import load_online

    predictor, adapter = load_online(toy_checkpoint, "tent", ["adapt.online.window=2"])
    sizes = []
    original = adapter.update
    adapter.update = lambda batch: sizes.append(len(batch.index)) or original(batch)
    list(predictor.stream_online(clip(5), adapter))
    assert sizes == [1, 2, 2, 2, 2]


def test_predict_on_an_mp4_equals_the_video_model_on_the_decoded_frames(toy_checkpoint, tmp_path):
    """What `stpl eval` computes for a pair (frame t, frame t-1, DIS flow at the model size), on the frames as the
    video decodes them, is what `stpl predict` writes for frame t."""
    video = write_video(tmp_path / "clip.mp4", clip(4, 48, 64), "mp4v", 10.0)
    out = tmp_path / "pred"
    assert main(["predict", "--ckpt", str(toy_checkpoint), "--input", str(video), "--out", str(out)]) == 0
    decoded = [frame for _, frame in open_frames(video)]
    predictor = stpl.load(toy_checkpoint)
    height, width = predictor.size
    small = [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in decoded]
    for t in range(len(decoded)):
        previous = small[t - 1] if t else small[t]
        flow = torch.from_numpy(DISFlow("medium")(small[t], previous) if t else np.zeros((height, width, 2), "f4"))
        with torch.no_grad():
            logits = predictor.model(
                normalize(torch.from_numpy(small[t]).permute(2, 0, 1)[None]),
                normalize(torch.from_numpy(previous).permute(2, 0, 1)[None]),
                flow.permute(2, 0, 1)[None],
            ).logits
        expected = torch.nn.functional.interpolate(logits, size=(48, 64), mode="bilinear", align_corners=False)
        written = cv2.imread(str(out / "masks" / f"frame{t:06d}.png"), cv2.IMREAD_UNCHANGED)
        # Exact, near-ties included: the same decoded frames, the same DIS call (deterministic), the same batch-of-1
        # encoder passes and upsampling in this process give bit-equal logits (the cached earlier encoding is the
        # pass made for it the step before), hence the same argmax.
        assert (written == expected[0].argmax(dim=0).numpy()).all()


def test_online_prediction_is_causal(toy_checkpoint):
    """Predictions for frames up to t do not change when the frames after t change."""
    from stpl.predict import load_online

    first = clip(6)
    second = [*first[:3], *[np.flipud(f).copy() for f in first[3:]]]  # the same first three frames
    outputs = []
    for frames in (first, second):
        predictor, adapter = load_online(toy_checkpoint, "tent", ["adapt.online.window=3", "adapt.lr=0.5"])
        outputs.append([p.classes for p in predictor.stream_online(frames, adapter)])
    # exact: the first three frames go through the same computation, bit for bit, in both runs
    assert all((a == b).all() for a, b in zip(outputs[0][:3], outputs[1][:3], strict=True))
    assert any((a != b).any() for a, b in zip(outputs[0][3:], outputs[1][3:], strict=True))  # later ones differ


def test_online_settings_are_the_causal_ones(toy_checkpoint):
    """Online, re-estimated statistics follow the stream, the teacher has no later frame, whole-split thresholds
    are refused; episodic mode restarts weights, teacher and optimiser before every update."""
    from stpl.config import AdaptConfig
    from stpl.online import causal_settings
    from stpl.predict import load_online

    settings = causal_settings(AdaptConfig(norm="reestimate", teacher_later=True))
    assert settings.norm == "update" and not settings.teacher_later
    with pytest.raises(StplError, match="class_median"):
        causal_settings(AdaptConfig(confidence="class_median"))
    predictor, adapter = load_online(toy_checkpoint, "self-training", ["adapt.online.episodic=true", "adapt.lr=0.5"])
    start = {k: v.clone() for k, v in predictor.model.state_dict().items()}
    list(predictor.stream_online(clip(3), adapter))
    teacher = adapter.method.teacher.model.state_dict()
    # after the last reset the teacher was rebuilt from the starting weights and moved by one window only
    first_key = next(k for k, v in start.items() if v.is_floating_point())
    assert not torch.equal(predictor.model.state_dict()[first_key], start[first_key])  # it did adapt
    assert adapter.optimizer.state_dict()["state"] and len(adapter.optimizer.state_dict()["state"]) > 0
    # One window moves the EMA teacher by at most 0.0043 here, three windows without the resets by 0.025 (both
    # measured): 0.01 tells them apart (0.05 would let a missing reset pass) and is far above any rounding.
    assert all(torch.allclose(teacher[k], start[k], atol=0.01) for k in start if start[k].is_floating_point())


def test_online_restore_sends_every_trained_weight_back_with_probability_one(toy_checkpoint):
    """adapt.online.restore_probability=1 undoes each update (predictions as the starting model's); 0 keeps it."""
    from stpl.predict import load_online

    moved = {}
    for probability in (0.0, 1.0):
        sets = ["adapt.online.window=3", "adapt.lr=0.5", f"adapt.online.restore_probability={probability}"]
        predictor, adapter = load_online(toy_checkpoint, "tent", sets)
        start = {k: v.clone() for k, v in predictor.model.named_parameters()}
        list(predictor.stream_online(clip(3), adapter))
        moved[probability] = any(not torch.equal(v, start[k]) for k, v in predictor.model.named_parameters())
    assert moved == {0.0: True, 1.0: False}


def test_the_replay_joins_earlier_pairs_drawn_once_per_seed_and_frame():
    from stpl.online import update_window

    assert update_window(2, window=4, replay=3, seed=0) == [0, 1, 2]  # nothing before the window yet
    assert update_window(9, window=4, replay=0, seed=0) == [6, 7, 8, 9]
    assert update_window(6, window=4, replay=5, seed=0) == [0, 1, 2, 3, 4, 5, 6]  # all 3 earlier ones
    drawn = update_window(20, window=4, replay=3, seed=1)
    assert drawn[3:] == [17, 18, 19, 20] and len(set(drawn[:3])) == 3 and max(drawn[:3]) < 17
    assert drawn == update_window(20, window=4, replay=3, seed=1)
    assert {tuple(update_window(20, 4, 3, seed)[:3]) for seed in range(5)} != {tuple(drawn[:3])}


def test_class_map_is_argmax_with_the_first_of_tied_maxima():
    from stpl.predict import class_map

    logits = torch.randn(11, 37, 53, generator=torch.Generator().manual_seed(0))
    logits[4, :5, :5] = logits[7, :5, :5] = logits.max() + 1.0  # a tie: the lower class id wins, as in argmax
    assert np.array_equal(class_map(logits), logits.argmax(dim=0).to(torch.uint8).numpy())
    assert (class_map(logits)[:5, :5] == 4).all()


def test_stream_recipe_applies_once_to_its_method_only(toy_checkpoint):
    from stpl.config import build_config
    from stpl.online import stream_recipe
    from stpl.predict import load_online

    stpl = stream_recipe(build_config(sets=["adapt.method=stpl", "adapt.lr=0.003"]))
    assert stpl.adapt.temporal_ensemble and stpl.adapt.lr == pytest.approx(0.006)
    assert stpl.adapt.online.frame_statistics == 1.0 and stpl.adapt.online.recipe == "offline"
    assert stream_recipe(stpl).adapt.lr == pytest.approx(0.006)  # applied once: the recorded config is what ran
    offline = stream_recipe(build_config(sets=["adapt.method=stpl", "adapt.lr=0.003", "adapt.online.recipe=offline"]))
    assert not offline.adapt.temporal_ensemble and offline.adapt.lr == pytest.approx(0.003)
    tent = stream_recipe(build_config(sets=["adapt.method=tent", "adapt.lr=0.003"]))
    assert not tent.adapt.temporal_ensemble and tent.adapt.lr == pytest.approx(0.003)
    assert tent.adapt.online.frame_statistics == 0.0
    _, adapter = load_online(toy_checkpoint, "stpl", ["adapt.lr=0.01"])
    assert adapter.config.temporal_ensemble
    from stpl.adapt.frame_statistics import FrameStatisticsBatchNorm2d

    norms = [m for m in adapter.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(type(m) is FrameStatisticsBatchNorm2d and m.frame_share == 1.0 for m in norms)
    assert adapter.optimizer.param_groups[0]["lr"] == pytest.approx(0.02)


def test_online_norm_momentum_sets_how_far_the_statistics_follow(toy_checkpoint):
    import torch

    from stpl.predict import load_online

    moved = {}
    for momentum in (0.01, 0.1):
        sets = [f"adapt.online.norm_momentum={momentum}", "adapt.lr=1e-9"]
        predictor, adapter = load_online(toy_checkpoint, "tent", sets)
        norms = [m for m in predictor.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert norms and all(norm.momentum == momentum for norm in norms)
        before = norms[0].running_mean.clone()
        list(predictor.stream_online(clip(1), adapter))  # one update (its forward pass moves the statistics)
        moved[momentum] = norms[0].running_mean - before
    # stored <- (1 - m) stored + m batch, twice: a one-frame stream pairs the frame with itself and both frames of
    # the pair pass the encoder, so the stored mean moves 1 - (1 - m)^2 of the way to the same batch mean
    assert moved[0.1].abs().max() > 1e-4
    ratio = (1 - 0.99**2) / (1 - 0.9**2)  # 0.1047; a single move would give 0.1, no change of momentum 1
    torch.testing.assert_close(moved[0.01], ratio * moved[0.1], rtol=1e-3, atol=1e-7)


def test_online_norm_source_prior_pulls_the_statistics_back_towards_the_start(toy_checkpoint):
    import torch

    from stpl.errors import StplError
    from stpl.predict import load_online

    moved = {}
    for prior in (0.0, 0.25):
        sets = [f"adapt.online.norm_source_prior={prior}", "adapt.lr=1e-9"]
        predictor, adapter = load_online(toy_checkpoint, "tent", sets)
        norm = next(m for m in predictor.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        before = norm.running_mean.clone()
        list(predictor.stream_online(clip(1), adapter))  # one update: the same batch statistics in both runs
        moved[prior] = norm.running_mean - before
    # after the update the stored mean goes 25 % of the way back: 0.75 of the displacement is left
    assert moved[0.0].abs().max() > 1e-4
    torch.testing.assert_close(moved[0.25], 0.75 * moved[0.0], rtol=1e-4, atol=1e-7)
    with pytest.raises(StplError, match="norm_source_prior"):
        load_online(toy_checkpoint, "tent", ["adapt.online.norm_source_prior=1.5"])


def test_online_frame_statistics_one_predicts_without_the_stored_statistics(toy_checkpoint):
    import torch

    from stpl.predict import load_online

    def stream(share: float, garble: bool) -> list[np.ndarray]:
        sets = [f"adapt.online.frame_statistics={share}", "adapt.lr=1e-9"]
        predictor, adapter = load_online(toy_checkpoint, "tent", sets)
        if garble:  # stored statistics far from anything the frames show
            for norm in (m for m in predictor.model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
                norm.running_mean.add_(3.0)
                norm.running_var.mul_(4.0)
        return [p.classes for p in predictor.stream_online(clip(3), adapter)]

    # each frame is normalised by its own statistics alone: the stored ones cannot change a prediction
    for plain, garbled in zip(stream(1.0, False), stream(1.0, True), strict=True):
        np.testing.assert_array_equal(plain, garbled)
    # the control: with the stored statistics (share 0) the same garbling does change them
    assert any((a != b).any() for a, b in zip(stream(0.0, False), stream(0.0, True), strict=True))
    with pytest.raises(StplError, match="frame_statistics"):
        load_online(toy_checkpoint, "tent", ["adapt.online.frame_statistics=1.5"])
