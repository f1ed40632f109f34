"""The camvid loader on real frames from ../shared/data/camvid (skipped, with the reason, where it is absent),
and on a generated SegNet-style tree for the error paths."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from stpl.config import build_config
from stpl.data import build_dataset
from stpl.data.camvid import CAMVID_CLASSES, CAMVID_PALETTE, parse_frame_name
from stpl.errors import StplError

CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"
needs_camvid = pytest.mark.skipif(not CAMVID.is_dir(), reason=f"CamVid copy not found at {CAMVID}")


def camvid_config(tmp_path, *sets):
    return build_config(sets=[
        "data.dataset=camvid", f"data.camvid.root={CAMVID}", "data.height=90", "data.width=120",
        f"flow.cache_dir={tmp_path / 'flow'}", *sets,
    ])  # fmt: skip


def test_names_and_palette():
    assert parse_frame_name("0001TP_006690.png") == ("0001TP", 6690)
    assert parse_frame_name("train/Seq05VD_f02550.png") == ("Seq05VD", 2550)
    with pytest.raises(StplError, match="cannot read sequence"):
        parse_frame_name("frame.png")
    assert len(CAMVID_CLASSES) == len(CAMVID_PALETTE) == 11


@needs_camvid
def test_real_frames_pairs_labels_and_flow(tmp_path):
    # a few frames around the adaptation/evaluation boundary of 0001TP
    config = camvid_config(tmp_path, "data.camvid.eval_range=[8520, 8610]")
    evaluation = build_dataset(config, "eval", with_labels=True)
    names = [(evaluation.names[c], evaluation.names[p]) for c, p in evaluation.pairs]
    # 008520 is in train/, 008550.. in test/: the earlier frame crosses splits; the first pairs with 008490
    assert names == [("0001TP_008520", "0001TP_008490"), ("0001TP_008550", "0001TP_008520"),
                     ("0001TP_008580", "0001TP_008550"), ("0001TP_008610", "0001TP_008580")]  # fmt: skip
    assert evaluation.frames.shape == (5, 90, 120, 3) and evaluation.frames.dtype == np.uint8
    current = evaluation.pairs[:, 0]
    labels = evaluation.labels[current]
    values = set(np.unique(labels).tolist())
    assert values <= set(range(11)) | {255} and {0, 1, 3} <= values  # sky, building, road at least
    assert (evaluation.labels[evaluation.pairs[0, 1]] == 255).all()  # an earlier-only frame's label is never read
    # real label file, resized: the road dominates the bottom rows of a driving frame
    assert np.mean(labels[:, -10:, 40:80] == 3) > 0.5  # measured 0.79
    # DIS flow carries frame t-1's labels onto frame t better than no motion at all
    import torch

    from stpl.models.warp import warp_labels

    full = camvid_config(tmp_path, "data.camvid.eval_range=[8520, 8610]", "data.camvid.adapt_range=[8490, 8610]")
    with_previous_labels = build_dataset(full, "adapt", with_labels=False)
    assert with_previous_labels.labels is None
    previous_labels = torch.from_numpy(evaluation.labels[evaluation.pairs[1:, 1]].astype(np.int64))
    flow = torch.from_numpy(evaluation.flows[1:]).permute(0, 3, 1, 2)
    warped = warp_labels(previous_labels, flow)
    target = torch.from_numpy(labels[1:].astype(np.int64))
    keep = (warped != 255) & (target != 255)
    static_keep = (previous_labels != 255) & (target != 255)
    agreement = (warped[keep] == target[keep]).float().mean()
    static = (previous_labels[static_keep] == target[static_keep]).float().mean()
    assert agreement > static  # measured 0.86 against 0.77 (DIS gives the same field with any thread count)


@needs_camvid
def test_source_split_excludes_ranges_and_reads_labels(tmp_path):
    config = camvid_config(tmp_path, "data.camvid.source_sequences=[0016E5]",
                           "data.camvid.source_exclude=['0016E5:390-7000', '0016E5:7500-99999']")  # fmt: skip
    source = build_dataset(config, "source", with_labels=True)
    frames = sorted(parse_frame_name(name + ".png")[1] for name in source.names)
    assert frames and all(7000 < f < 7500 for f in frames)
    first = source.names[source.pairs[0, 0]]
    assert source.names[source.pairs[0, 1]] == first  # its earlier frame is excluded: paired with itself
    assert source.labels is not None
    with pytest.raises(StplError, match="is not '<sequence>:<first>-<last>'"):
        build_dataset(camvid_config(tmp_path, "data.camvid.source_exclude=['7500-8700']"), "source", True)


@needs_camvid
def test_night_corruption_applies_to_target_frames_only(tmp_path):
    sets = ["data.camvid.target_sequence=0016E5", "data.camvid.eval_range=[7959, 7963]"]
    plain = build_dataset(camvid_config(tmp_path, *sets), "eval", with_labels=False)
    night = build_dataset(camvid_config(tmp_path, *sets, "data.camvid.target_corruption=night"), "eval", False)
    assert night.frames.mean() < 0.7 * plain.frames.mean()  # measured 0.41 of it
    names = [night.names[c] for c, _ in night.pairs]
    assert names == ["0016E5_007959", "0016E5_007961", "0016E5_007963"]


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), array)


def test_generated_tree_and_bad_input(tmp_path):
    root = tmp_path / "camvid"
    lines = []
    for frame in (30, 60, 90):
        write_png(root / "train" / f"SeqA_{frame:06d}.png", np.full((36, 48, 3), frame, np.uint8))
        write_png(root / "trainannot" / f"SeqA_{frame:06d}.png", np.full((36, 48), 11, np.uint8))
        lines.append(f"train/SeqA_{frame:06d}.png trainannot/SeqA_{frame:06d}.png")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    (root / "test.txt").write_text(lines[-1] + "\n")
    sets = ["data.dataset=camvid", f"data.camvid.root={root}", "data.camvid.source_sequences=[SeqA]",
            "data.camvid.target_sequence=SeqA", "data.height=18", "data.width=24",
            f"flow.cache_dir={tmp_path / 'f'}"]  # fmt: skip
    dataset = build_dataset(build_config(sets=sets), "eval", with_labels=True)
    assert len(dataset) == 1 and (dataset.labels == 255).all()  # void (11) becomes ignore
    with pytest.raises(StplError, match="target sequence 'SeqB' not found"):
        build_dataset(build_config(sets=[*sets, "data.camvid.target_sequence=SeqB"]), "eval", with_labels=True)
    with pytest.raises(StplError, match="CamVid folder not found"):
        build_dataset(build_config(sets=[*sets, f"data.camvid.root={tmp_path / 'none'}"]), "eval", with_labels=True)
    (root / "train" / "SeqA_000090.png").write_bytes(b"broken")
    with pytest.raises(StplError, match=r"cannot read image .*SeqA_000090\.png"):
        build_dataset(build_config(sets=sets), "eval", with_labels=True)


@needs_camvid
def test_evaluation_labels_at_their_own_resolution(tmp_path):
    config = camvid_config(tmp_path, "data.camvid.eval_range=[8550, 8580]", "eval.label_height=360",
                           "eval.label_width=480")  # fmt: skip
    evaluation = build_dataset(config, "eval", with_labels=True)
    assert evaluation.frames.shape[1:3] == (90, 120) and evaluation.labels.shape[1:] == (360, 480)
    raw = cv2.imread(str(CAMVID / "testannot" / "0001TP_008550.png"), cv2.IMREAD_UNCHANGED)
    expected = np.where(raw < 11, raw, 255)
    np.testing.assert_array_equal(evaluation.labels[evaluation.pairs[0, 0]], expected)  # native labels, untouched
    adaptation = build_dataset(config, "adapt", with_labels=True)  # other splits keep the data size
    assert adaptation.labels.shape[1:] == (90, 120)


def bad_label_tree(tmp_path, label: np.ndarray) -> list[str]:
    """A one-sequence CamVid tree whose last frame has `label` (36x48 frames); returns the config sets."""
    root = tmp_path / "camvid"
    lines = []
    for frame in (30, 60):
        write_png(root / "train" / f"SeqA_{frame:06d}.png", np.full((36, 48, 3), frame, np.uint8))
        annotation = label if frame == 60 else np.zeros((36, 48), np.uint8)
        write_png(root / "trainannot" / f"SeqA_{frame:06d}.png", annotation)
        lines.append(f"train/SeqA_{frame:06d}.png trainannot/SeqA_{frame:06d}.png")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    (root / "test.txt").write_text(lines[-1] + "\n")
    return ["data.dataset=camvid", f"data.camvid.root={root}", "data.camvid.source_sequences=[SeqA]",
            "data.camvid.target_sequence=SeqA", "data.height=18", "data.width=24",
            f"flow.cache_dir={tmp_path / 'f'}"]  # fmt: skip


def test_unknown_label_ids_stop_with_the_file_and_values(tmp_path):
    label = np.zeros((36, 48), np.uint8)
    label[3, 4], label[5, 6], label[7, 8] = 200, 11, 12  # 11 is void, 12 and 200 are nothing
    sets = bad_label_tree(tmp_path, label)
    with pytest.raises(StplError, match=r"SeqA_000060\.png holds values 12, 200 outside the class ids 0\.\.10"):
        build_dataset(build_config(sets=sets), "eval", with_labels=True)


def test_a_label_of_another_size_than_its_frame_stops_with_both_sizes(tmp_path):
    sets = bad_label_tree(tmp_path, np.zeros((18, 48), np.uint8))
    with pytest.raises(StplError, match=r"SeqA_000060\.png is 48x18 but its frame .* is 48x36"):
        build_dataset(build_config(sets=sets), "source", with_labels=True)
