"""The student's strong view: labels follow the geometry, cut-out hides frame t only, off means unchanged."""

import dataclasses

import torch

from stpl.adapt.student_view import cutout_boxes, strong_view
from stpl.config import AdaptConfig
from stpl.data.pairs import PairBatch


def make_batch() -> tuple[PairBatch, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    current = torch.randn(2, 3, 17, 23, generator=generator)
    previous = torch.randn(2, 3, 17, 23, generator=generator)
    labels = torch.randint(0, 4, (2, 17, 23), generator=generator)
    return PairBatch(current, previous, torch.randn(2, 2, 17, 23, generator=generator), None, [0, 1]), labels


def test_every_option_off_returns_the_batch_unchanged():
    batch, labels = make_batch()
    view, view_labels = strong_view(batch, labels, AdaptConfig(), torch.Generator().manual_seed(1))
    assert view is batch and view_labels is labels


def test_labels_move_with_the_pixels():
    batch, _ = make_batch()
    # a label that is a function of the pixel: class = 1 where channel 0 of frame t is positive
    labels = (batch.current[:, 0] > 0).long()
    config = dataclasses.replace(AdaptConfig(), student_scale_range=(2.0, 2.0))
    view, view_labels = strong_view(batch, labels, config, torch.Generator().manual_seed(1))
    assert view.current.shape == batch.current.shape and view_labels.shape == labels.shape
    # bilinear upsampling by 2 keeps the sign of most pixels: the moved labels agree with the moved image
    agreement = ((view.current[:, 0] > 0).long() == view_labels).float().mean()
    assert agreement > 0.8  # measured 0.89 on this seeded batch: a sign flip needs |x| within rounding of 0
    unmoved = ((view.current[:, 0] > 0).long() == labels).float().mean()
    assert unmoved < 0.7  # the view did move (measured 0.49, chance level)


def test_cutout_hides_a_box_of_frame_t_only():
    batch, labels = make_batch()
    config = dataclasses.replace(AdaptConfig(), student_cutout=0.25)
    view, view_labels = strong_view(batch, labels, config, torch.Generator().manual_seed(1))
    hidden = (view.current == 0).all(dim=1)
    share = hidden.float().mean(dim=(1, 2))
    assert ((share > 0.15) & (share < 0.35)).all()  # measured 0.266 for a quarter-area box: integer box sizes
    # outside the box the pixels are copied: exact
    torch.testing.assert_close(view.current[~hidden[:, None].expand_as(view.current)],
                               batch.current[~hidden[:, None].expand_as(batch.current)])  # fmt: skip
    assert torch.equal(view.previous, batch.previous) and torch.equal(view_labels, labels)


def test_cutout_boxes_fit_inside_the_image():
    boxes = cutout_boxes(torch.Generator().manual_seed(0), 200, (9, 31), 0.5)
    assert all(top >= 0 and left >= 0 and top + h <= 9 and left + w <= 31 for top, left, h, w in boxes)


def test_flip_averaging_teacher_is_the_mean_of_the_two_mirrored_predictions():
    from conftest import make_tiny_model
    from stpl.adapt.teachers import Teacher

    model = make_tiny_model(num_classes=4)
    batch, _ = make_batch()
    plain = Teacher("source", model).predict(batch)
    averaged = Teacher("source", model, flip_average=True).predict(batch)
    mirror_flow = batch.flow.flip(-1) * torch.tensor([-1.0, 1.0]).view(1, 2, 1, 1)
    with torch.no_grad():
        mirrored = model.eval()(batch.current.flip(-1), batch.previous.flip(-1), mirror_flow)
    expected = 0.5 * (plain.logits.softmax(1) + mirrored.logits.flip(-1).softmax(1))
    # probabilities <= 1 through log and exp: a few ulps (measured 3e-8), inside the default atol 1e-5, while
    # a missing or unflipped mirror moves them by ~1e-2
    torch.testing.assert_close(averaged.logits.exp(), expected)
    assert not torch.allclose(averaged.logits.exp(), plain.logits.softmax(1))  # the mirror adds something
