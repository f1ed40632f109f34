import numpy as np
import pytest

from stpl.data.corruptions import corrupt, night


def test_night_darkens_deterministically_per_frame():
    image = np.random.default_rng(0).integers(0, 256, size=(21, 33, 3), dtype=np.uint8)
    dark = night(image, "0016E5_07959")
    assert dark.dtype == np.uint8 and dark.shape == image.shape
    np.testing.assert_array_equal(dark, night(image, "0016E5_07959"))  # same frame, same pixels
    assert not np.array_equal(dark, night(image, "0016E5_07961"))  # other frame, other noise
    # a flat mid-grey: 0.6 * 0.5^1.5 = 0.212 -> ~54/255 (noise averages out over the image)
    grey = np.full((64, 64, 3), 128, np.uint8)
    assert abs(night(grey, "x").mean() - 255 * 0.6 * (128 / 255) ** 1.5) < 0.5
    assert night(grey, "x").std() == pytest.approx(4.0, abs=0.5)  # the sigma 4/255 noise


def test_corrupt_dispatch():
    image = np.zeros((5, 7, 3), np.uint8)
    assert corrupt(image, "a", "none") is image
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        corrupt(image, "a", "fog")
