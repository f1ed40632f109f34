import torch

from stpl.flow.geometry import resize_flow
from stpl.models.warp import warp, warp_error, warp_labels


def test_zero_flow_is_identity():
    source = torch.randn(2, 5, 13, 17)
    warped, valid = warp(source, torch.zeros(2, 2, 13, 17))
    # Sampling positions go through normalised grid coordinates and back: ~1 ulp of the coordinate (< 2e-6 px
    # here) times neighbour differences of a few units; measured <= 1.7e-6 over 200 draws, inside the default 1e-5.
    torch.testing.assert_close(warped, source)
    assert valid.all()


def test_integer_shift_moves_values_and_marks_border_invalid():
    source = torch.arange(7 * 9, dtype=torch.float32).view(1, 1, 7, 9)
    flow = torch.zeros(1, 2, 7, 9)
    flow[:, 0] = 2.0  # every pixel of t looks 2 pixels to the right in t-k
    flow[:, 1] = -1.0  # and one row up
    warped, valid = warp(source, flow)
    # out(y, x) = in(y - 1, x + 2) where that lies inside the image (positions exact to ~1e-6 px, neighbour
    # differences <= 9: <= 1e-5 off, inside the default 1e-5 + 1.3e-6 x value)
    torch.testing.assert_close(warped[0, 0, 1:, :-2], source[0, 0, :-1, 2:])
    assert valid[0, 1:, :-2].all()
    assert not valid[0, 0, :].any()  # row 0 would read row -1
    assert not valid[0, :, -2:].any()  # last two columns would read beyond the right edge


def test_half_pixel_shift_interpolates_bilinearly():
    source = torch.tensor([[0.0, 10.0, 20.0]]).view(1, 1, 1, 3)
    flow = torch.zeros(1, 2, 1, 3)
    flow[:, 0] = 0.5
    warped, valid = warp(source, flow)
    torch.testing.assert_close(warped[0, 0, 0, :2], torch.tensor([5.0, 15.0]))
    assert valid[0, 0].tolist() == [True, True, False]


def test_flow_resize_scales_displacements():
    flow = torch.full((1, 2, 9, 17), 4.0)
    small = resize_flow(flow, (5, 9))
    torch.testing.assert_close(small[:, 0], torch.full((1, 5, 9), 4.0 * 9 / 17))
    torch.testing.assert_close(small[:, 1], torch.full((1, 5, 9), 4.0 * 5 / 9))


def test_warp_labels_nearest_and_ignore():
    labels = torch.tensor([[[1, 2, 3], [4, 5, 6]]])
    flow = torch.zeros(1, 2, 2, 3)
    flow[:, 0] = 1.0
    warped = warp_labels(labels, flow)
    assert warped.tolist() == [[[2, 3, 255], [5, 6, 255]]]


def test_warp_error_is_zero_for_the_right_flow_and_large_for_a_wrong_one():
    torch.manual_seed(0)
    previous = torch.randn(1, 3, 24, 40)
    current = torch.roll(previous, shifts=-4, dims=-1)  # frame t(x) = frame t-k(x + 4)
    right = torch.zeros(1, 2, 24, 40)
    right[:, 0] = 4.0
    error = warp_error(current, previous, right, (3, 5))
    assert error.shape == (1, 3, 5)
    # Positions at x + 4 carry ~1 ulp of x < 40 (3.8e-6 px) through the grid normalisation; times neighbour
    # differences up to ~6 that is <= 2.3e-5 at a pixel (cell means measured <= 1.3e-6 over 200 draws), above
    # the default atol 1e-5 in the worst case; 1e-4 covers it and is 1e4 below the wrong flow's ~1.1.
    # The last cell holds the wrapped columns.
    torch.testing.assert_close(error[:, :, :4], torch.zeros(1, 3, 4), rtol=0, atol=1e-4)
    wrong = warp_error(current, previous, torch.zeros(1, 2, 24, 40), (3, 5))
    assert wrong.min() > 0.5  # unit-variance noise moved by 4 pixels: mean |a - b| is about 1.1
