import numpy as np
import pytest

from stpl.errors import StplError
from stpl.flow import FlowCache, decode_flow, encode_flow, read_flow_file, write_flow_file


def test_peer_format_round_trip(tmp_path):
    flow = np.random.default_rng(0).normal(0, 20, size=(7, 9, 2)).astype(np.float32)
    path = tmp_path / "frankfurt_000000_000294_000293_int16_x10.npy"
    write_flow_file(path, flow)
    stored = np.load(path)
    assert stored.dtype == np.int16 and stored.shape == (7, 9, 2)
    # exact: the writer's own float32 product and rounding; the value = 10 x pixels
    np.testing.assert_array_equal(stored, np.round(flow * 10).astype(np.int16))
    # quantised to 0.1 px: at most 0.05 off, plus the float32 roundings of x10 and /10 at |flow| < 100 (< 1e-5)
    np.testing.assert_allclose(read_flow_file(path), flow, atol=0.05 + 1e-5)
    # saturated ends read back as float32: 3276.7 is 3276.699951 there, 1.5e-8 relative, inside the default 1e-7
    np.testing.assert_allclose(decode_flow(encode_flow(np.array([[[4000.0, -4000.0]]])))[0, 0], [3276.7, -3276.8])


def test_bad_flow_files(tmp_path):
    with pytest.raises(StplError, match="cannot read flow file"):
        read_flow_file(tmp_path / "missing.npy")
    np.save(tmp_path / "wrong.npy", np.zeros((3, 4), np.int16))
    with pytest.raises(StplError, match="expected H x W x 2"):
        read_flow_file(tmp_path / "wrong.npy")


def test_cache_key_covers_dataset_frames_size_and_estimator(tmp_path):
    base = FlowCache.key("camvid", "a", "b", (10, 20), "dis-medium")
    assert len({base, FlowCache.key("synthetic", "a", "b", (10, 20), "dis-medium"),
                FlowCache.key("camvid", "a", "c", (10, 20), "dis-medium"),
                FlowCache.key("camvid", "a", "b", (10, 21), "dis-medium"),
                FlowCache.key("camvid", "a", "b", (10, 20), "dis-fast")}) == 5  # fmt: skip
    cache = FlowCache(tmp_path)
    assert cache.get(base) is None
    cache.put(base, np.ones((2, 3, 2), np.float32))
    np.testing.assert_allclose(cache.get(base), np.ones((2, 3, 2)))  # 1.0 is exact in int16 x10 and float32


def test_another_copy_with_the_same_frame_names_gets_its_own_flow(tmp_path):
    """Two data sets with one name and the same frame names but other pixels: the second must not read the
    first one's cached flow (a moving square: +2 px in one copy, -3 px in the other)."""
    from stpl.config import FlowConfig
    from stpl.flow import estimate_pair_flows

    def copy(shift):
        frames = np.zeros((2, 48, 64, 3), np.uint8)
        texture = np.random.default_rng(0).integers(60, 255, (20, 20, 3), dtype=np.uint8)
        frames[0, 14:34, 22:42] = texture
        frames[1, 14:34, 22 + shift : 42 + shift] = texture
        return frames

    config = FlowConfig(cache_dir=str(tmp_path))
    pairs = np.array([[1, 0]])  # backward flow from frame 1 to frame 0: -shift inside the square
    first = estimate_pair_flows(copy(2), pairs, ["f0", "f1"], "same-name", config)
    second = estimate_pair_flows(copy(-3), pairs, ["f0", "f1"], "same-name", config)
    # DIS is deterministic (same field with 1 to 8 OpenCV threads) and gives medians of exactly -2.0 and 3.0 here;
    # 0.5 px tells the two copies' 5 px apart with room for another build's sub-pixel refinement.
    assert abs(float(np.median(first[0, 18:30, 28:36, 0])) + 2.0) < 0.5
    assert abs(float(np.median(second[0, 18:30, 28:36, 0])) - 3.0) < 0.5


def test_dis_at_half_size_recovers_a_shift_in_full_size_pixels():
    """A textured square moved 4 px right and 2 px down: the backward flow inside it is (-4, -2) at the data size,
    whether DIS runs there or at half of it (its field resized back with its vectors doubled)."""
    from stpl.flow import DISFlow

    texture = np.random.default_rng(1).integers(40, 255, (32, 32, 3), dtype=np.uint8)
    texture = np.kron(texture[::4, ::4], np.ones((4, 4, 1), np.uint8))  # 4-px blocks survive the halving
    previous = np.full((72, 96, 3), 20, np.uint8)
    current = previous.copy()
    previous[20:52, 30:62] = texture
    current[22:54, 34:66] = texture
    for scale in (1.0, 0.5):  # medians measured within 0.003 px of (-4, -2) at both scales; 0.5 px of room
        flow = DISFlow("medium", scale)(current, previous)
        assert flow.shape == (72, 96, 2) and flow.dtype == np.float32
        np.testing.assert_allclose(np.median(flow[28:48, 40:60].reshape(-1, 2), axis=0), [-4.0, -2.0], atol=0.5)
    assert DISFlow("medium", 0.5).name == "dis-medium-x0.5" != DISFlow("medium").name  # their own cache entries
    with pytest.raises(ValueError, match="scale"):
        DISFlow("medium", 0.0)


def test_flow_scale_outside_zero_to_one_is_refused():
    from stpl.config import build_config

    with pytest.raises(StplError, match=r"flow\.scale"):
        build_config(sets=["flow.scale=1.5"])
