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
    # Seeded by the name: measured mean 54.45 (+0.04 from the formula; the noise's mean over 12,288 values has a
    # sd of 0.04) and std 4.002; ulp-level changes move either by < 0.01, so 0.5 is a wide margin, not a lucky draw.
    assert abs(night(grey, "x").mean() - 255 * 0.6 * (128 / 255) ** 1.5) < 0.5
    assert night(grey, "x").std() == pytest.approx(4.0, abs=0.5)  # the sigma 4/255 noise


def test_corrupt_dispatch():
    image = np.zeros((5, 7, 3), np.uint8)
    assert corrupt(image, "a", "none") is image
    with pytest.raises(ValueError, match="unknown corruption 'hail'"):
        corrupt(image, "a", "hail")


def test_adverse_changes_from_frame_to_frame_and_repeats_per_frame():
    from stpl.data.corruptions import adverse

    grey = np.full((60, 80, 3), 128, np.uint8)
    first, second = adverse(grey, "0016E5_07959"), adverse(grey, "0016E5_07961")
    np.testing.assert_array_equal(first, adverse(grey, "0016E5_07959"))
    assert first.dtype == np.uint8 and first.shape == grey.shape
    # occluders, streaks and a per-frame brightness: the two frames differ over much of the image (measured 0.99)
    assert (np.abs(first.astype(int) - second.astype(int)) > 10).mean() > 0.3
    # occluders are flat boxes (plus sensor noise): on a busy image some 4x4 windows turn almost uniform
    busy = np.random.default_rng(0).integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    for name in ("a", "b", "c"):
        out = adverse(busy, name).astype(float)
        flat = [
            out[y : y + 4, x : x + 4].std(axis=(0, 1)).mean() < 20 for y in range(0, 57, 4) for x in range(0, 77, 4)
        ]
        assert 0.02 < np.mean(flat) < 0.4  # measured 0.07-0.15 for a, b, c


def test_held_out_shifts_by_hand():
    from stpl.data.corruptions import cold_cast, defocus, low_contrast, sensor_noise

    black, white = np.zeros((4, 6, 3), np.uint8), np.full((4, 6, 3), 255, np.uint8)
    # low_contrast: 0.4 x + 0.35 -> black 0.35 * 255 = 89.25, white 0.75 * 255 = 191.25
    assert (low_contrast(black, "a") == 89).all() and (low_contrast(white, "a") == 191).all()
    # cold_cast on white: gains 0.65, 0.9, 1.25 of 255 -> 165.75, 229.5, 318.75 (clipped to 255)
    np.testing.assert_array_equal(cold_cast(white, "a")[0, 0], [166, 230, 255])
    # on mid-grey 128: (128/255)^0.9 = 0.5378 -> 89.1, 123.4, 171.4
    np.testing.assert_array_equal(cold_cast(np.full((2, 2, 3), 128, np.uint8), "a")[0, 0], [89, 123, 171])
    # defocus keeps a flat image and spreads a step: the columns next to a black/white edge turn grey
    assert (defocus(np.full((8, 32, 3), 77, np.uint8), "a") == 77).all()
    step = np.zeros((8, 320, 3), np.uint8)
    step[:, 160:] = 255
    row = defocus(step, "a")[4, :, 0].astype(int)  # sigma 3 at 320 columns: the edge spreads over a few pixels
    # one pixel either side of the edge: 255 * (1 - Phi(0.5 / 3)) = 111.6 and 255 * Phi(0.5 / 3) = 143.4
    assert row[0] == 0 and row[-1] == 255
    assert abs(row[159] - 111.6) < 3 and abs(row[160] - 143.4) < 3
    # sensor_noise: sigma 20 on grey (no clipping within 6 sigma of 128), the same per frame, other per frame
    grey = np.full((64, 64, 3), 128, np.uint8)
    noisy = sensor_noise(grey, "f1")
    assert noisy.astype(float).std() == pytest.approx(20.0, abs=1.0)
    np.testing.assert_array_equal(noisy, sensor_noise(grey, "f1"))
    assert not np.array_equal(noisy, sensor_noise(grey, "f2"))
