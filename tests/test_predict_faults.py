"""`stpl predict` and the Python predictor under faults and bad input: one `stpl: error:` line and exit 2 (or a
correct result), the output folder replaced as a unit, an earlier prediction kept byte for byte."""

import errno
import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

import stpl
from conftest import clip, write_folder
from stpl.cli import main
from stpl.errors import StplError
from stpl.flow.dis import DISFlow, dis_accepts


def predict(checkpoint: Path, source: Path, out: Path, *options: str) -> int:
    return main(["predict", "--ckpt", str(checkpoint), "--input", str(source), "--out", str(out), *options])


def one_error_line(capsys) -> str:
    """The one `stpl: error:` line, last on stderr, with no traceback before it."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("stpl: error:"), err
    assert not any("Traceback" in line or line.startswith("stpl: error:") for line in err[:-1]), err
    return err[-1]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def decoded_frames(video: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def assert_consistent(out: Path, names: list[str]) -> dict:
    """predict.json, the masks, the overlays and the video all describe the same frames, and nothing else is there."""
    summary = json.loads((out / "predict.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["legend.png", "masks", "overlay", "overlay.mp4", "predict.json"]
    assert sorted(p.stem for p in (out / "masks").iterdir()) == names
    assert sorted(p.stem for p in (out / "overlay").iterdir()) == names
    assert summary["frames"] == len(names) == len(decoded_frames(out / "overlay.mp4"))
    return summary


def no_leftovers(parent: Path, expected: set[str]) -> None:
    """No temporary, set-aside or lock folder beside the output."""
    assert {p.name for p in parent.iterdir()} == expected


@pytest.fixture
def finished(toy_checkpoint, tmp_path, capsys):
    """A finished 6-frame prediction in tmp_path/pred and its files' bytes."""
    source = write_folder(tmp_path / "frames", clip(6))
    out = tmp_path / "pred"
    assert predict(toy_checkpoint, source, out) == 0
    capsys.readouterr()
    return source, out, snapshot(out)


@pytest.mark.parametrize("fault, status", [("full disk", 2), ("ctrl-c", 130)])
def test_a_rerun_failing_at_the_4th_frame_keeps_the_earlier_prediction_byte_for_byte(
    toy_checkpoint, finished, monkeypatch, capsys, fault, status
):
    import stpl.atomic

    _source, out, before = finished
    flush = stpl.atomic._flush_to_disk

    def fail_at_the_4th_mask(path):
        if f"masks{os.sep}.f003.png." in path:
            if fault == "ctrl-c":
                raise KeyboardInterrupt
            raise OSError(errno.ENOSPC, "No space left on device")
        flush(path)

    monkeypatch.setattr(stpl.atomic, "_flush_to_disk", fail_at_the_4th_mask)
    other = write_folder(out.parent / "other", clip(6, 29, 71))
    assert predict(toy_checkpoint, other, out) == status
    if fault == "full disk":
        line = one_error_line(capsys)
        assert "f003.png" in line and line.endswith("No space left on device")
    assert snapshot(out) == before
    assert_consistent(out, [f"f{t:03d}" for t in range(6)])
    no_leftovers(out.parent, {"frames", "other", "pred"})


def test_a_successful_rerun_with_fewer_frames_leaves_no_stale_file(toy_checkpoint, finished, capsys):
    source, out, before = finished
    assert predict(toy_checkpoint, source, out, "--end", "3") == 0
    summary = assert_consistent(out, ["f000", "f001", "f002"])
    assert summary["frames"] == 3 and snapshot(out) != before
    no_leftovers(out.parent, {"frames", "pred"})


def test_a_failed_swap_puts_the_earlier_prediction_back(toy_checkpoint, finished, monkeypatch, capsys):
    import stpl.output_folder

    source, out, before = finished
    rename = os.rename

    def refuse_the_new_folder(old, new):
        if ".pred.tmp-" in str(old):
            raise OSError(errno.EIO, "Input/output error")
        rename(old, new)

    monkeypatch.setattr(stpl.output_folder.os, "rename", refuse_the_new_folder)
    assert predict(toy_checkpoint, source, out, "--end", "2") == 2
    assert one_error_line(capsys) == f"stpl: error: cannot write {out}: Input/output error"
    assert snapshot(out) == before
    no_leftovers(out.parent, {"frames", "pred"})


def test_a_run_killed_mid_swap_is_repaired_by_the_next_run(toy_checkpoint, finished, capsys):
    """Killed between its two renames, a run leaves the old folder aside and its new one beside it; the next run
    puts the old one back, removes the rest and then replaces it."""
    source, out, _before = finished
    out.rename(out.parent / ".pred.old-99999")
    (out.parent / ".pred.tmp-99999" / "masks").mkdir(parents=True)
    assert predict(toy_checkpoint, source, out, "--end", "4") == 0
    assert_consistent(out, ["f000", "f001", "f002", "f003"])
    no_leftovers(out.parent, {"frames", "pred"})


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(toy_checkpoint, finished, capsys):
    from stpl.output_folder import written_whole
    from stpl.predict import PREDICTION_FILES

    source, out, before = finished
    with pytest.raises(RuntimeError), written_whole(out, PREDICTION_FILES):  # a first writer, which then fails
        assert predict(toy_checkpoint, source, out) == 2
        assert "in use" in one_error_line(capsys)
        raise RuntimeError("the first writer fails too")
    assert snapshot(out) == before
    no_leftovers(out.parent, {"frames", "pred"})


def test_a_folder_of_other_files_is_refused_not_deleted(toy_checkpoint, tmp_path, capsys):
    source = write_folder(tmp_path / "frames", clip(2))
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert predict(toy_checkpoint, source, out) == 2
    line = one_error_line(capsys)
    assert "notes.txt" in line and str(out) in line
    assert snapshot(out) == {"notes.txt": b"keep me"}


def test_frames_of_several_sizes_all_reach_the_video(toy_checkpoint, tmp_path, capsys):
    frames = [f if t % 2 == 0 else cv2.resize(f, (71, 29)) for t, f in enumerate(clip(6))]
    source = write_folder(tmp_path / "frames", frames)
    out = tmp_path / "pred"
    assert predict(toy_checkpoint, source, out) == 0
    summary = assert_consistent(out, [f"f{t:03d}" for t in range(6)])
    for t, frame in enumerate(frames):  # masks and overlays at each frame's own size
        assert cv2.imread(str(out / "masks" / f"f{t:03d}.png"), cv2.IMREAD_UNCHANGED).shape == frame.shape[:2]
        assert cv2.imread(str(out / "overlay" / f"f{t:03d}.png")).shape[:2] == frame.shape[:2]
    video = decoded_frames(out / "overlay.mp4")
    first_overlay = cv2.imread(str(out / "overlay" / "f000.png"))
    # every picture fitted into the first one's size (41x57 here; MPEG-4 part 2 codes even sizes, so the decoder
    # may give one pixel less on each axis: the size is compared up to that pixel)
    (shape,) = {v.shape for v in video}
    assert all(first_overlay.shape[axis] - 1 <= shape[axis] <= first_overlay.shape[axis] for axis in (0, 1))
    assert summary["frame_sizes"] == [[29, 71], [41, 57]]
    assert summary["overlay_video_size"] == list(first_overlay.shape[:2])


def test_out_naming_an_existing_file_is_one_line(toy_checkpoint, tmp_path, capsys):
    source = write_folder(tmp_path / "frames", clip(2))
    out = tmp_path / "taken"
    out.write_bytes(b"a file")
    assert predict(toy_checkpoint, source, out) == 2
    line = one_error_line(capsys)
    assert str(out) in line and "Not a directory" in line
    assert out.read_bytes() == b"a file"
    no_leftovers(tmp_path, {"frames", "taken"})


def chmod_blocks_reads(path: Path) -> bool:
    """False where chmod 000 does not stop this process (root): the test then simulates the refusal instead."""
    try:
        os.listdir(path) if path.is_dir() else path.read_bytes()
    except PermissionError:
        return True
    return False


@pytest.mark.parametrize("what", ["folder", "video", "image in the folder"])
@pytest.mark.parametrize("how", ["chmod", "simulated"])
def test_an_unreadable_input_names_the_path_and_permission_denied(
    toy_checkpoint, tmp_path, capsys, monkeypatch, what, how
):
    import stpl.data.frames

    folder = write_folder(tmp_path / "frames", clip(3))
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (57, 41))
    for frame in clip(3):
        writer.write(frame)
    writer.release()
    source = video if what == "video" else folder
    blocked = {"folder": folder, "video": video, "image in the folder": folder / "f001.png"}[what]
    if how == "chmod":
        blocked.chmod(0)
        try:
            if not chmod_blocks_reads(blocked):
                pytest.skip("chmod 000 does not block reads for this user (root); the simulated case checks it")
            status = predict(toy_checkpoint, source, tmp_path / "pred")
        finally:
            blocked.chmod(0o755)
    else:
        listdir, opened = os.listdir, open

        def denied(path, *args, **kwargs):
            if Path(path) == blocked:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return (listdir if not args and not kwargs else opened)(path, *args, **kwargs)

        monkeypatch.setattr(stpl.data.frames.os, "listdir", denied)
        monkeypatch.setattr(stpl.data.frames, "open", denied, raising=False)  # this module's open only
        status = predict(toy_checkpoint, source, tmp_path / "pred")
    assert status == 2
    line = one_error_line(capsys)
    assert str(blocked) in line and line.endswith("Permission denied")
    no_leftovers(tmp_path, {"frames", "clip.avi"})  # no output folder, no temporary one


@pytest.mark.parametrize("how", ["chmod", "simulated"])
def test_an_unwritable_output_folder_names_the_path_and_permission_denied(
    toy_checkpoint, finished, capsys, monkeypatch, how
):
    import stpl.output_folder

    source, out, before = finished
    if how == "chmod":
        out.chmod(0o555)
        try:
            (out / "probe").touch()
            (out / "probe").unlink()
            out.chmod(0o755)
            pytest.skip("chmod 555 does not block writes for this user (root); the simulated case checks it")
        except PermissionError:
            status = predict(toy_checkpoint, source, out)
        finally:
            out.chmod(0o755)
    else:
        access = os.access
        monkeypatch.setattr(
            stpl.output_folder.os, "access", lambda path, mode: Path(path) != out and access(path, mode)
        )
        status = predict(toy_checkpoint, source, out)
    assert status == 2
    assert one_error_line(capsys) == f"stpl: error: cannot write {out}: Permission denied"
    assert snapshot(out) == before
    no_leftovers(out.parent, {"frames", "pred"})


def test_an_output_parent_one_may_not_write_is_one_line(toy_checkpoint, tmp_path, capsys, monkeypatch):
    source = write_folder(tmp_path / "frames", clip(2))
    parent = tmp_path / "locked"
    parent.mkdir()
    mkdir = Path.mkdir

    def denied(self, *args, **kwargs):
        if self.parent == parent:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", denied)
    assert predict(toy_checkpoint, source, parent / "pred") == 2
    assert one_error_line(capsys) == f"stpl: error: cannot write {parent / 'pred'}: Permission denied"
    assert list(parent.iterdir()) == []


def test_a_flow_scale_too_small_for_dis_is_refused_with_the_allowed_range(toy_checkpoint, tmp_path, capsys):
    source = write_folder(tmp_path / "frames", clip(3))
    assert predict(toy_checkpoint, source, tmp_path / "pred", "--flow-scale", "0.1") == 2
    line = one_error_line(capsys)
    assert "flow scale 0.1" in line and "must be in [" in line
    lowest = float(line.split("must be in [")[1].split(",")[0])
    assert 0.1 < lowest < 1
    with pytest.raises(StplError, match=r"must be in \["):  # the API alike
        stpl.load(toy_checkpoint, flow_scale=0.1)
    for bad in (0.0, 1.5, float("nan"), "0.5"):
        with pytest.raises(StplError, match=r"\(0, 1\]"):
            stpl.load(toy_checkpoint, flow_scale=bad)
    # the lowest scale of the range works
    assert predict(toy_checkpoint, source, tmp_path / "pred", "--flow-scale", str(lowest)) == 0
    assert json.loads((tmp_path / "pred" / "predict.json").read_text())["frames"] == 3


def test_dis_sizes_that_would_crash_opencv_are_refused_and_a_reused_estimator_has_no_memory():
    # 15x40 (medium) and 31x100 (ultrafast) end in a segmentation fault inside OpenCV 5.1, 7x100 in a cv2.error
    assert not dis_accepts(15, 40, 8, 1) and not dis_accepts(31, 100, 8, 2) and not dis_accepts(7, 100, 8, 1)
    assert dis_accepts(16, 40, 8, 1) and dis_accepts(33, 47, 8, 1) and dis_accepts(360, 480, 8, 2)
    with pytest.raises(StplError, match="too small for DIS"):
        DISFlow("medium")(np.zeros((15, 40, 3), np.uint8), np.zeros((15, 40, 3), np.uint8))
    # OpenCV rewrites a DIS object's scales when an image is small for them (20x44 here): the flow of a pair must
    # not depend on what the object computed before (flow-cache threads, stream order)
    frame = np.random.default_rng(0).integers(0, 255, (20, 44, 3), dtype=np.uint8)
    later, other = np.roll(frame, 3, axis=0), np.roll(frame, 2, axis=1)
    reused = DISFlow("medium")
    first = reused(later, frame)
    reused(other, frame)
    assert np.array_equal(reused(later, frame), first) and np.array_equal(DISFlow("medium")(later, frame), first)


def test_start_past_the_end_of_a_video_is_refused_before_anything_is_written(toy_checkpoint, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (57, 41))
    for frame in clip(4):
        writer.write(frame)
    writer.release()
    assert predict(toy_checkpoint, video, tmp_path / "pred", "--start", "10") == 2
    line = one_error_line(capsys)
    assert "no frames selected" in line and "holds 4 frames" in line and "starts at frame 10" in line
    folder = write_folder(tmp_path / "frames", clip(3))
    assert predict(toy_checkpoint, folder, tmp_path / "pred", "--start", "5") == 2
    assert "holds 3 images" in one_error_line(capsys)
    no_leftovers(tmp_path, {"clip.mp4", "frames"})


def test_the_api_takes_a_single_frame_and_explains_paths_and_pil_images(toy_checkpoint, tmp_path):
    predictor = stpl.load(toy_checkpoint)
    frame = clip(1)[0]
    mask = predictor.predict(frame)  # one [H,W,3] frame in, one map out
    assert isinstance(mask, np.ndarray) and mask.shape == (41, 57)
    assert np.array_equal(mask, predictor.predict([frame])[0])
    classes, probabilities = predictor.predict(frame, probabilities=True)
    assert np.array_equal(classes, mask) and probabilities.shape == (len(predictor.class_names), 41, 57)
    for path in (str(tmp_path / "clip.mp4"), tmp_path / "clip.mp4"):
        with pytest.raises(StplError, match=r"predict_video\(path, out\)"):
            predictor.predict(path)
    with pytest.raises(StplError, match=r"frame 1 is a path"):
        predictor.predict([frame, "f001.png"])
    with pytest.raises(StplError, match="uint8 RGB"):
        predictor.predict(np.zeros((41, 57), np.uint8))
    image_module = pytest.importorskip("PIL.Image")
    image = image_module.fromarray(frame)
    with pytest.raises(StplError, match=r"np\.asarray\(image\.convert\('RGB'\)\)"):
        predictor.predict(image)
    with pytest.raises(StplError, match=r"frame 0 is a PIL image"):
        predictor.predict([image])


def test_predict_json_names_the_checkpoint_by_path_sha256_and_version(toy_checkpoint, finished):
    _source, out, _before = finished
    summary = json.loads((out / "predict.json").read_text())
    assert summary["checkpoint"] == {
        "path": str(toy_checkpoint),
        "sha256": hashlib.sha256(toy_checkpoint.read_bytes()).hexdigest(),
        "stpl_version": stpl.__version__,
    }


@pytest.mark.parametrize("where", ["mount point", "read-only parent"])
def test_an_out_that_cannot_be_swapped_is_refused_before_any_work(where, toy_checkpoint, tmp_path, capsys, monkeypatch):
    source = write_folder(tmp_path / "frames", clip(2))
    out = tmp_path / "volume"
    out.mkdir()
    if where == "mount point":  # e.g. docker run -v host/pred:/out (a mount point cannot be renamed)
        monkeypatch.setattr(os.path, "ismount", lambda path: str(path) == str(out))
        words = "it is a mount point"
    else:  # simulated: root may write anywhere
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: str(path) != str(tmp_path) and real_access(path, mode))
        words = f"its folder {tmp_path} is not writable"
    assert predict(toy_checkpoint, source, out) == 2
    line = one_error_line(capsys)
    assert words in line and f"{out / 'predictions'}" in line
    assert list(out.iterdir()) == []
