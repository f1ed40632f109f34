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
    np.testing.assert_array_equal(stored, np.round(flow * 10).astype(np.int16))  # value = 10 x pixels
    np.testing.assert_allclose(read_flow_file(path), flow, atol=0.05 + 1e-6)
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
    np.testing.assert_allclose(cache.get(base), np.ones((2, 3, 2)))
