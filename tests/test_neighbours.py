"""The temporal teacher's look ahead: following pairs, batches that carry them, the warped look and its vote."""

import dataclasses

import numpy as np
import torch

from stpl.adapt.shared import prediction_pseudo_labels
from stpl.adapt.teachers import LaterLook, Teacher, standardised_warp_error
from stpl.config import AdaptConfig, FlowConfig
from stpl.data.neighbours import following_pairs, with_later_neighbours
from stpl.data.pairs import LaterNeighbours, PairDataset, RandomBatches
from stpl.models.segmenter import SegmenterOutput


def test_following_pairs_by_hand():
    # frame 0 pairs with itself (first of its clip), then 1 <- 0, 2 <- 1; frame 5 <- 4 belongs to another clip
    pairs = np.array([[0, 0], [1, 0], [2, 1], [5, 4]])
    assert following_pairs(pairs).tolist() == [1, 2, -1, -1]


def clip_dataset(count: int = 4, height: int = 9, width: int = 13) -> PairDataset:
    """Frames whose every pixel holds its frame number, paired (t, t-1), the first with itself."""
    frames = np.stack([np.full((height, width, 3), 10 * i, np.uint8) for i in range(count)])
    pairs = np.array([[0, 0]] + [[i, i - 1] for i in range(1, count)])
    flows = np.zeros((count, height, width, 2), np.float32)
    return PairDataset(frames, pairs, flows, None, ("a", "b"), [f"f{i}" for i in range(count)], "clip")


def test_batches_carry_the_following_pair_and_mirror_its_forward_flow():
    dataset = clip_dataset()
    forward = np.zeros((4, 9, 13, 2), np.float32)
    forward[..., 0] = np.arange(13, dtype=np.float32)  # x displacement grows to the right
    later = dataset.with_later(LaterNeighbours(np.array([1, 2, 3, -1]), forward))
    batch = later.batch([1, 3], hflip=[True, False])
    assert batch.has_later.tolist() == [True, False]
    # pair 1 is (1, 0): its following pair is (2, 1); pair 3 has none and repeats itself
    raw = batch.later.current[:, 0, 0, 0]
    assert torch.equal(raw, later.batch([2, 3]).current[:, 0, 0, 0])  # the same frame, normalised alike
    # mirrored: the field is flipped left-right and its x component negated
    assert batch.forward_flow[0, 0, 0, 0].item() == -12.0 and batch.forward_flow[1, 0, 0, 0].item() == 0.0
    assert later.without_time().later is None and later.without_labels().later is not None


def test_scale_augmentation_refuses_a_look_ahead_it_would_not_move():
    dataset = clip_dataset()
    later = dataset.with_later(LaterNeighbours(np.array([1, 2, 3, -1]), np.zeros((4, 9, 13, 2), np.float32)))
    try:
        RandomBatches(later, 2, seed=0, scale_range=(0.8, 1.2)).get(0)
    except ValueError as err:
        assert "look ahead" in str(err)
    else:
        raise AssertionError("scale_range with a look ahead must be refused")


def test_with_later_neighbours_estimates_forward_flow_of_a_moving_square(tmp_path):
    height, width = 48, 64
    frames = np.zeros((3, height, width, 3), np.uint8)
    for t in range(3):  # a textured square moving 3 pixels right per frame
        rng = np.random.default_rng(0)
        frames[t, 12:36, 10 + 3 * t : 34 + 3 * t] = rng.integers(60, 255, (24, 24, 3), dtype=np.uint8)
    pairs = np.array([[0, 0], [1, 0], [2, 1]])
    dataset = PairDataset(frames, pairs, np.zeros((3, height, width, 2), np.float32), None, ("a",), ["0", "1", "2"])
    later = with_later_neighbours(dataset, FlowConfig(cache_dir=str(tmp_path)))
    assert later.later.pair_index.tolist() == [1, 2, -1]
    inside = later.later.flows[1, 18:30, 16:28, 0]  # frame 1 -> frame 2 inside the square: about +3 px in x
    assert abs(float(np.median(inside)) - 3.0) < 0.5  # measured 3.0 (DIS is deterministic); 0.5 px of room
    assert not later.later.flows[2].any()  # the last frame has no later frame


class ConstantModel(torch.nn.Module):
    """Logits [B,2,h,w] that favour class 1 in proportion to the frame's mean value (a stand-in video model)."""

    def forward(self, current, previous, flow, with_embeddings=False):
        level = current.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)
        logits = torch.cat((torch.zeros_like(level), level), dim=1).expand(-1, -1, 3, 4).contiguous()
        valid = torch.ones(current.shape[0], 3, 4, dtype=torch.bool)
        return SegmenterOutput(logits, logits, logits, valid, logits, logits)


def test_look_later_warps_the_prediction_of_t_plus_k_and_masks_pairs_without_one():
    dataset = clip_dataset()
    later = dataset.with_later(LaterNeighbours(np.array([1, 2, 3, -1]), np.zeros((4, 9, 13, 2), np.float32)))
    batch = later.batch([0, 3])
    teacher = Teacher("current", ConstantModel())
    look = teacher.look_later(batch)
    ahead = teacher.predict(batch.later).logits
    # zero forward flow: the prediction of t+k itself; bilinear sampling at the pixel centres of a constant map
    # is exact up to an ulp or two, inside allclose's rtol 1e-5
    assert torch.allclose(look.logits, ahead)
    assert look.valid[0].all() and not look.valid[1].any()
    assert teacher.look_later(dataset.batch([0, 1])) is None


def test_the_look_ahead_outvotes_a_one_frame_error_where_it_is_valid():
    # Pixel 0 and 1: frame t says class 1 weakly (0.55); frame t+k says class 0 (0.9). Pixel 1's look is invalid.
    current = torch.log(torch.tensor([[0.45, 0.55], [0.45, 0.55]])).T.reshape(1, 2, 1, 2)
    ahead = torch.log(torch.tensor([[0.9, 0.1], [0.9, 0.1]])).T.reshape(1, 2, 1, 2)
    valid = torch.ones(1, 1, 2, dtype=torch.bool)
    output = SegmenterOutput(current, current, current, valid, current, current)
    rule = AdaptConfig(confidence="global", threshold=0.5)  # every vote and threshold below is >= 0.025 apart
    look = LaterLook(ahead, torch.tensor([[[True, False]]]))
    labels = prediction_pseudo_labels(output, (1, 2), rule, later=look)
    assert labels.tolist() == [[[0, 1]]]  # (0.45 + 0.9) / 2 = 0.675 for class 0 at pixel 0; pixel 1 alone
    # with the t-k ensemble on, t and t-k count as two votes: (2 * 0.45 + 0.9) / 3 = 0.6 still for class 0
    both = prediction_pseudo_labels(output, (1, 2), dataclasses.replace(rule, temporal_ensemble=True), later=look)
    assert both.tolist() == [[[0, 1]]]
    strict = prediction_pseudo_labels(output, (1, 2), dataclasses.replace(rule, threshold=0.65), later=look)
    assert strict.tolist() == [[[0, 255]]]  # 0.675 passes 0.65; the lone 0.55 does not


def test_standardised_warp_error_ignores_a_flicker_but_not_a_shift():
    torch.manual_seed(0)
    image = torch.rand(1, 3, 16, 20)
    flow = torch.zeros(1, 2, 16, 20)
    flicker = 0.5 * image + 0.2
    # Standardising undoes the affine flicker up to float32 rounding of values ~1 (measured 4.8e-7, and 1.8e-7
    # below for the undone shift): 1e-4 is 200x that, while a real mismatch gives ~1 (measured 1.2 here).
    assert standardised_warp_error(image, flicker, flow, (4, 5)).max() < 1e-4
    shifted = image.roll(3, dims=-1)
    assert standardised_warp_error(image, shifted, flow, (4, 5)).mean() > 0.5
    # the right flow undoes the shift: out(p) = shifted(p + 3) = image(p), away from the wrapped border
    moved = torch.zeros(1, 2, 16, 20)
    moved[:, 0] = 3.0
    assert standardised_warp_error(image, shifted, moved, (4, 5))[..., :3].max() < 1e-4


def test_a_split_without_following_pairs_refuses_the_look_ahead(tmp_path):
    import pytest

    from stpl.errors import StplError

    frames = np.zeros((4, 9, 13, 3), np.uint8)
    pairs = np.array([[1, 0], [3, 2]])  # two standalone snippets: nothing follows either pair
    dataset = PairDataset(frames, pairs, np.zeros((2, 9, 13, 2), np.float32), None, ("a",), list("abcd"), "x")
    with pytest.raises(StplError, match="nothing to look ahead to"):
        with_later_neighbours(dataset, FlowConfig(cache_dir=str(tmp_path)))


def test_only_methods_whose_teacher_looks_ahead_ask_for_the_following_pairs():
    from stpl.adapt import METHODS

    ahead = AdaptConfig(teacher_later=True)
    assert METHODS["stpl"].method.looks_ahead(ahead) and METHODS["self-training"].method.looks_ahead(ahead)
    assert not METHODS["vst"].method.looks_ahead(ahead) and not METHODS["tent"].method.looks_ahead(ahead)
    assert not METHODS["stpl"].method.looks_ahead(AdaptConfig())
