"""cityscapes_seq, viper and synthia_seq loaders on generated trees with the real file names and label encodings
(Cityscapes labelIds PNGs, VIPER indexed-colour PNGs, SYNTHIA 16-bit PNGs with the class in the red channel)."""

import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stpl.config import build_config
from stpl.data import build_dataset, dataset_classes, reported_classes
from stpl.data.cityscapes_seq import snippet_labelled_frames
from stpl.data.class_maps import SYNTHIA12, VIPER15, VIPER_PALETTE, map_to_train_ids
from stpl.errors import StplError
from stpl.flow import write_flow_file

torch.set_num_threads(1)
H, W = 20, 40  # stored size of every generated frame and label; data size is 10x20
REPO = Path(__file__).resolve().parents[1]


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def frame_image(value: int) -> np.ndarray:
    return np.full((H, W, 3), value, np.uint8)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def write_palette_png(path: Path, indices: np.ndarray, palette) -> None:
    """An 8-bit indexed-colour PNG, as VIPER ships its class maps (pixel value = palette index = class id)."""
    rows = b"".join(b"\x00" + row.astype(np.uint8).tobytes() for row in indices)
    header = struct.pack(">IIBBBBB", indices.shape[1], indices.shape[0], 8, 3, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).ravel()))
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


def cityscapes_tree(root: Path) -> None:
    """train: aachen seqs 000000 and 000001 (frames 0..29, labelled 19); val: frankfurt 000000 frames 275..304."""
    snippets = [("train", "aachen", "000000", 0), ("train", "aachen", "000001", 0), ("val", "frankfurt", "000000", 275)]
    for split, city, seq, first in snippets:
        for t in range(first, first + 30):
            name = f"{city}_{seq}_{t:06d}_leftImg8bit.png"
            write_png(root / "leftImg8bit_sequence" / split / city / name, frame_image(t % 250))
        label = np.zeros((H, W), np.uint8)  # 0 = unlabeled
        label[:10, :20] = 7  # road
        label[:10, 20:] = 25  # rider
        label[10:, :20] = 22  # terrain
        label_name = f"{city}_{seq}_{first + 19:06d}_gtFine_labelIds.png"
        write_png(root / "gtFine" / split / city / label_name, label)


def viper_tree(root: Path) -> None:
    for seq in ("001", "002"):
        for t in (0, 9, 10):
            write_png(root / "train" / "img" / seq / f"{seq}_{t:05d}.jpg", frame_image(40 + t))
        for t in (0, 10):
            ids = np.full((H, W), 2, np.uint8)  # sky
            ids[10:, :] = 3  # road
            ids[14:, 16:24] = 24  # the ego vehicle: a car touching the bottom centre
            ids[10:14, 0:4] = 24  # another car
            ids[0:4, 0:4] = 7  # tree
            ids[0:4, 4:8] = 8  # vegetation
            ids[0:4, 8:12] = 25  # van (not in the protocol)
            ids[0:4, 12:16] = 20  # person
            write_palette_png(root / "train" / "cls" / seq / f"{seq}_{t:05d}.png", ids, VIPER_PALETTE)


def synthia_tree(root: Path) -> None:
    for t in range(4):
        write_png(root / "RGB" / "Stereo_Left" / "Omni_F" / f"{t:06d}.png", frame_image(60 + t))
        label = np.zeros((H, W, 3), np.uint16)  # OpenCV order B, G, R: class id in R, instance id in G
        label[..., 1] = 700 + t
        label[:, :10, 2] = 3  # road
        label[:, 10:20, 2] = 11  # SYNTHIA bicycle -> rider
        label[:, 20:30, 2] = 5  # fence
        label[:, 30:, 2] = 12  # lane marking -> ignore
        label[15:, :, 2] = 8  # car, only in the bottom quarter that the crop removes
        write_png(root / "GT" / "LABELS" / "Stereo_Left" / "Omni_F" / f"{t:06d}.png", label)


@pytest.fixture
def trees(tmp_path):
    cityscapes_tree(tmp_path / "cityscapes")
    viper_tree(tmp_path / "viper")
    synthia_tree(tmp_path / "synthia")
    return tmp_path


def video_config(root: Path, *sets: str):
    return build_config(sets=[
        "data.dataset=cityscapes_seq", f"data.cityscapes_seq.root={root / 'cityscapes'}",
        f"data.viper.root={root / 'viper'}", f"data.synthia_seq.root={root / 'synthia'}",
        "data.height=10", "data.width=20", "data.read_workers=1", f"flow.cache_dir={root / 'flow-cache'}", *sets,
    ])  # fmt: skip


def pair_names(dataset):
    return [(dataset.names[c], dataset.names[p]) for c, p in dataset.pairs]


def test_protocol_tables():
    assert len(VIPER15.classes) == len(VIPER15.palette) == 15 and VIPER15.reported == VIPER15.classes
    assert len(SYNTHIA12.classes) == 12 and len(SYNTHIA12.reported) == 11 and "fence" not in SYNTHIA12.reported
    assert SYNTHIA12.reported_indices == (0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11)
    city15, city12 = VIPER15.lookup("cityscapes_seq"), SYNTHIA12.lookup("cityscapes_seq")
    raw = np.array([7, 25, 24, 22, 13, 17, 33, 0, 12])  # road rider person terrain fence pole bicycle void wall
    assert map_to_train_ids(raw, city15).tolist() == [0, 9, 9, 7, 3, 255, 14, 255, 255]
    assert map_to_train_ids(raw, city12).tolist() == [0, 10, 9, 255, 3, 4, 255, 255, 255]
    viper = VIPER15.lookup("viper")
    assert viper[[3, 7, 8, 6, 2, 20, 24, 25, 23, 22, 0]].tolist() == [0, 6, 6, 7, 8, 9, 10, 255, 13, 14, 255]
    synthia = SYNTHIA12.lookup("synthia_seq")
    assert synthia[[3, 11, 10, 5, 12, 15, 1, 8, 0]].tolist() == [0, 10, 9, 3, 255, 5, 8, 11, 255]


def test_snippet_rule():
    assert snippet_labelled_frames(list(range(30)), "x", "k") == [19]
    assert snippet_labelled_frames(list(range(275, 305)), "x", "k") == [294]
    assert snippet_labelled_frames(list(range(60)) + list(range(100, 130)), "x", "k") == [19, 49, 119]
    with pytest.raises(StplError, match=r"25 consecutive frames from 000005 .* data\.cityscapes_seq\.val_list"):
        snippet_labelled_frames(list(range(5, 30)), "x", "data.cityscapes_seq.val_list")


def test_cityscapes_seq_splits_pairs_and_labels(trees):
    evaluation = build_dataset(video_config(trees), "eval", with_labels=True)
    assert pair_names(evaluation) == [("val/frankfurt_000000_000294", "val/frankfurt_000000_000293")]
    assert evaluation.frames.shape == (2, 10, 20, 3) and evaluation.frames.dtype == np.uint8
    assert evaluation.frames[0, 0, 0].tolist() == [44, 44, 44]  # 294 % 250: the labelled frame, resized
    label = evaluation.labels[0]
    assert label.dtype == np.uint8 and label.shape == (10, 20)
    assert (label[:5, :10] == 0).all() and (label[:5, 10:] == 9).all()  # road; rider merged into person
    assert (label[5:, :10] == 7).all() and (label[5:, 10:] == 255).all()  # terrain; unlabeled -> ignore
    assert (evaluation.labels[1] == 255).all()  # the earlier frame's label is never read
    adapt = build_dataset(video_config(trees, "data.frame_gap=2"), "adapt", with_labels=False)
    assert adapt.labels is None
    assert pair_names(adapt) == [("train/aachen_000000_000019", "train/aachen_000000_000017"),
                                 ("train/aachen_000001_000019", "train/aachen_000001_000017")]  # fmt: skip
    assert adapt.flows.shape == (2, 10, 20, 2)
    synthia_protocol = build_dataset(video_config(trees, "data.cityscapes_seq.protocol=synthia12"), "eval", True)
    assert synthia_protocol.class_names == SYNTHIA12.classes
    assert (synthia_protocol.labels[0][:5, 10:] == 10).all() and (synthia_protocol.labels[0][5:, :10] == 255).all()
    list_file = trees / "val_list.txt"
    list_file.write_text("aachen/aachen_000001_000019_leftImg8bit.png\n")
    listed = build_dataset(video_config(trees, f"data.cityscapes_seq.train_list={list_file}"), "adapt", False)
    assert pair_names(listed) == [("train/aachen_000001_000019", "train/aachen_000001_000018")]


def test_viper_source_and_adaptation_never_touches_it(trees):
    config = video_config(trees, "data.source_dataset=viper")
    assert dataset_classes(config) == VIPER15.classes and reported_classes(config) == VIPER15.classes
    source = build_dataset(config, "source", with_labels=True)
    assert pair_names(source) == [("001_00010", "001_00009"), ("002_00010", "002_00009")]  # 00000 has no t-1
    assert source.frames.shape == (4, 10, 20, 3) and source.class_names == VIPER15.classes
    label = source.labels[0]
    assert (label[:2, 0:2] == 6).all() and (label[:2, 2:4] == 6).all()  # tree and vegetation -> vegetation
    assert (label[:2, 4:6] == 255).all() and (label[:2, 6:8] == 9).all()  # van ignored; person
    assert (label[5:7, 0:2] == 10).all() and (label[7:, 8:12] == 255).all()  # a car; the ego vehicle is void
    assert (label[5:7, 4:8] == 0).all() and (label[2:5, 10:] == 8).all()  # road, sky
    assert (build_dataset(video_config(trees, "data.source_dataset=viper", "data.viper.ignore_ego_vehicle=false"),
                          "source", True).labels[0][7:, 8:12] == 10).all()  # fmt: skip
    assert len(build_dataset(video_config(trees, "data.source_dataset=viper", "data.viper.subsample=2"),
                             "source", False)) == 1  # fmt: skip
    shutil.rmtree(trees / "viper")  # source-free: adaptation and evaluation must not need the source tree
    shutil.rmtree(trees / "cityscapes" / "gtFine" / "train")  # nor the target's training labels
    adapt = build_dataset(config, "adapt", with_labels=False)
    assert len(adapt) == 2 and adapt.labels is None
    assert len(build_dataset(config, "eval", with_labels=True)) == 1
    with pytest.raises(StplError, match=r"VIPER folder not found: .*viper \(set data\.viper\.root\)"):
        build_dataset(config, "source", with_labels=True)


def test_synthia_seq_source(trees):
    config = video_config(trees, "data.source_dataset=synthia_seq", "data.cityscapes_seq.protocol=synthia12",
                          "data.synthia_seq.crop_bottom=0.25")  # fmt: skip
    assert dataset_classes(config) == SYNTHIA12.classes
    assert "fence" in dataset_classes(config) and "fence" not in reported_classes(config)
    source = build_dataset(config, "source", with_labels=True)
    assert pair_names(source) == [("000001", "000000"), ("000002", "000001"), ("000003", "000002")]
    assert source.frames.shape == (4, 10, 20, 3)
    label = source.labels[source.pairs[0, 0]]
    assert (label[:, :5] == 0).all() and (label[:, 5:10] == 10).all()  # road; bicycle -> rider
    assert (label[:, 10:15] == 3).all() and (label[:, 15:] == 255).all()  # fence trained; lane marking ignored
    assert 11 not in label  # the car rows are below the crop
    assert (source.labels[source.pairs[0, 1]] == 255).all()  # frame 000000 is only an earlier frame
    mismatched = video_config(trees, "data.source_dataset=synthia_seq")  # protocol left at viper15
    with pytest.raises(StplError, match=r"data\.cityscapes_seq\.protocol"):
        dataset_classes(mismatched)
    with pytest.raises(StplError, match="only the source split"):
        build_dataset(video_config(trees, "data.dataset=synthia_seq"), "adapt", with_labels=False)


def test_peer_flow_files(trees):
    flow_dir = trees / "peer-flow"
    flow = np.zeros((H, W, 2), np.float32)
    flow[..., 0], flow[..., 1] = 3.9, -1.9  # stored at 20x40, read at 10x20
    write_flow_file(flow_dir / "val" / "frankfurt_000000_000294_000293_int16_x10.npy", flow)
    write_flow_file(flow_dir / "viper" / "001_0001000009_int16_x10.npy", flow)
    write_flow_file(flow_dir / "viper" / "002_0001000009_int16_x10.npy", flow)
    for t in (1, 2, 3):
        write_flow_file(flow_dir / "synthia" / f"{t:06d}_int16_x10.npy", flow)
    sets = [
        "flow.method=files",
        f"data.cityscapes_seq.flow_dir_val={flow_dir / 'val'}",
        f"data.viper.flow_dir={flow_dir / 'viper'}",
        f"data.synthia_seq.flow_dir={flow_dir / 'synthia'}",
    ]
    evaluation = build_dataset(video_config(trees, *sets), "eval", with_labels=True)
    # each displacement scaled by its own axis' size ratio (as the spec and the peers): x by 20/40, y by 10/20
    # (3.9 and -1.9 are whole tenths, so the int16 x10 file holds them exactly; only float32 rounding, ~2e-7, is
    # left, and 1e-4 fails any other scale)
    np.testing.assert_allclose(evaluation.flows[0, ..., 0], 3.9 * 20 / 40, atol=1e-4)
    np.testing.assert_allclose(evaluation.flows[0, ..., 1], -1.9 * 10 / 20, atol=1e-4)
    viper = build_dataset(video_config(trees, *sets, "data.source_dataset=viper"), "source", with_labels=False)
    assert viper.flows.shape == (2, 10, 20, 2)
    synthia = video_config(trees, *sets, "data.source_dataset=synthia_seq", "data.cityscapes_seq.protocol=synthia12")
    assert build_dataset(synthia, "source", with_labels=False).flows.shape == (3, 10, 20, 2)
    with pytest.raises(StplError, match=r"flow file not found: .*aachen_000000_000019_000018_int16_x10\.npy"):
        build_dataset(video_config(trees, *sets, f"data.cityscapes_seq.flow_dir_train={flow_dir}"), "adapt", False)
    with pytest.raises(StplError, match=r"data\.cityscapes_seq\.flow_dir_train"):
        build_dataset(video_config(trees, *sets), "adapt", with_labels=False)  # no folder given
    with pytest.raises(StplError, match="frame_gap=1"):
        build_dataset(video_config(trees, *sets, "data.source_dataset=synthia_seq", "data.frame_gap=2",
                                   "data.cityscapes_seq.protocol=synthia12"), "source", False)  # fmt: skip
    with pytest.raises(StplError, match="only available for cityscapes_seq"):
        build_dataset(build_config(sets=["flow.method=files"]), "eval", with_labels=True)


def test_clear_errors(trees):
    with pytest.raises(StplError, match=r"Cityscapes-Seq folder not found: .*none \(set data\.cityscapes_seq\.root\)"):
        build_dataset(video_config(trees, f"data.cityscapes_seq.root={trees / 'none'}"), "eval", with_labels=True)
    city = trees / "cityscapes"
    (city / "gtFine" / "val" / "frankfurt" / "frankfurt_000000_000294_gtFine_labelIds.png").unlink()
    with pytest.raises(StplError, match=r"label not found .*frankfurt_000000_000294_gtFine_labelIds\.png"):
        build_dataset(video_config(trees), "eval", with_labels=True)
    assert len(build_dataset(video_config(trees), "eval", with_labels=False)) == 1  # labels withheld: not needed
    frame = city / "leftImg8bit_sequence" / "val" / "frankfurt" / "frankfurt_000000_000293_leftImg8bit.png"
    frame.write_bytes(b"broken")
    with pytest.raises(StplError, match=r"cannot read image .*frankfurt_000000_000293_leftImg8bit\.png"):
        build_dataset(video_config(trees), "eval", with_labels=False)
    frame.unlink()  # the snippet is now incomplete: the snippet rule refuses it, a list file names the frames
    with pytest.raises(StplError, match=r"not whole 30-frame snippets; name the labelled frames in .*val_list"):
        build_dataset(video_config(trees), "eval", with_labels=False)
    val_list = trees / "val.txt"
    with pytest.raises(StplError, match=r"list file not found: .*val\.txt \(set data\.cityscapes_seq\.val_list\)"):
        build_dataset(video_config(trees, f"data.cityscapes_seq.val_list={val_list}"), "eval", with_labels=False)
    val_list.write_text("frankfurt/frankfurt_000000_000294_leftImg8bit.png\n")
    with pytest.raises(StplError, match=r"frame not found: .*frankfurt_000000_000293_leftImg8bit\.png"):
        build_dataset(video_config(trees, f"data.cityscapes_seq.val_list={val_list}"), "eval", with_labels=False)


@pytest.mark.parametrize(
    ("name", "source", "classes", "reported"),
    [("viper2cityseq", "viper", 15, 15), ("synthia2cityseq", "synthia_seq", 12, 11)],
)
def test_protocol_configs_load(name, source, classes, reported):
    config = build_config(REPO / "configs" / name / "base.yaml")
    assert config.data.dataset == "cityscapes_seq" and config.data.source_dataset == source
    assert (config.data.height, config.data.width, config.data.frame_gap) == (512, 1024, 1)
    assert config.flow.method == "files"
    assert len(dataset_classes(config)) == classes and len(reported_classes(config)) == reported
