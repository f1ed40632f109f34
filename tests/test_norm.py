"""AdaBN re-estimation of normalisation statistics, with and without the source statistics as a prior."""

import pytest
import torch
from torch import nn

from stpl.adapt.norm import reestimate_norm_statistics
from stpl.data.pairs import PairBatch


class NormOnly(nn.Module):
    """A 'model' that is one BN layer applied to both frames, as the encoder is in adaptation."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm2d(2)

    def forward(self, current, previous, flow):
        return self.norm(current), self.norm(previous)


def batches(offset: float, count: int = 3):
    generator = torch.Generator().manual_seed(0)
    for _ in range(count):
        current = torch.randn(4, 2, 5, 7, generator=generator) * 2.0 + offset
        yield PairBatch(current, current + 1.0, torch.zeros(4, 2, 5, 7), None)


def target_statistics(offset: float):
    frames = [frame for batch in batches(offset) for frame in (batch.current, batch.previous)]
    data = torch.cat(frames).transpose(0, 1).reshape(2, -1)
    return data.mean(dim=1)


@pytest.mark.parametrize("weight", [0.0, 0.25, 1.0])
def test_reestimated_mean_mixes_source_and_target(weight):
    model = NormOnly()
    model.norm.running_mean.fill_(-3.0)  # the "source" statistics
    model.norm.running_var.fill_(0.5)
    model.norm.momentum = 0.1
    count = reestimate_norm_statistics(model, batches(offset=5.0), source_weight=weight)
    assert count == 3
    expected = weight * -3.0 + (1 - weight) * target_statistics(5.0)
    # Means ~5 of 840 values per channel, averaged per batch here and over all at once there: float32 order
    # differences ~1e-6; 1e-4 still fails a momentum-0.1 running average (off by > 1) or a wrong mix.
    assert torch.allclose(model.norm.running_mean, expected, atol=1e-4)
    # the target variance (about 4 within a batch) pulled towards the source's 0.5
    if weight == 1.0:
        assert torch.allclose(model.norm.running_var, torch.full((2,), 0.5))
    else:
        # Each batch's variance of 140 values has a sd of 4 x sqrt(2/139) = 0.48, about 0.28 over the 3 batches
        # (measured 3.87-4.06), so 0.5 + 3 (1 - w) is < 2 sd below the expected value: too close for a seeded
        # draw to prove anything. 0.5 + 2 (1 - w) is > 5 sd below it and still fails an unchanged variance (0.5)
        # and a mix weighted the wrong way round (1.375 for w = 0.25).
        assert bool((model.norm.running_var > 0.5 + (1 - weight) * 2.0).all())
    assert model.norm.momentum == 0.1  # the layer's own momentum is restored
    assert model.training  # mode restored (the module started in training mode)


def test_source_weight_outside_unit_interval_is_refused():
    with pytest.raises(ValueError, match="source_weight"):
        reestimate_norm_statistics(NormOnly(), batches(0.0), source_weight=1.5)
