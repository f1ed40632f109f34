import pytest
import torch

from stpl.models.fusion import FUSIONS, AttentionFusion, build_fusion
from stpl.models.heads import ProjectionHead, ScoreFusion

# Identity-initialised blocks against their closed forms on randn inputs: a product by 1 plus products by 0 is
# exact (measured bit-equal), a 0.98/0.02 mix or an L2 norm is off by an ulp or two (measured <= 2.4e-7); the
# default float32 tolerance (1e-5 + 1.3e-6|x|) holds that on any machine and any draw, and fails a wrong mix.


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_fusion_shapes(name):
    current, warped = torch.randn(2, 6, 5, 7), torch.randn(2, 6, 5, 7)
    block = build_fusion(name, 6)
    out = block(current, warped)
    expected_channels = 12 if name == "concat" else 6
    assert out.shape == (2, expected_channels, 5, 7)
    assert block.out_channels == expected_channels


def test_concat_and_add_values():
    current, warped = torch.randn(1, 3, 4, 5), torch.randn(1, 3, 4, 5)
    torch.testing.assert_close(build_fusion("add", 3)(current, warped), current + warped)
    out = build_fusion("concat", 3)(current, warped)
    torch.testing.assert_close(out[:, :3], current)
    torch.testing.assert_close(out[:, 3:], warped)


def test_conv_fusion_starts_as_identity_on_current():
    current, warped = torch.randn(2, 6, 5, 7), torch.randn(2, 6, 5, 7)
    torch.testing.assert_close(build_fusion("conv", 6)(current, warped), current)


def test_attention_fusion_starts_close_to_current():
    block = AttentionFusion(6, initial_current_weight=0.98)
    current, warped = torch.randn(2, 6, 5, 7), torch.randn(2, 6, 5, 7)
    weights = block.weights(current, warped)
    torch.testing.assert_close(weights[:, 0], torch.full((2, 5, 7), 0.98))
    torch.testing.assert_close(block(current, warped), 0.98 * current + 0.02 * warped)


def test_score_fusion_identity_and_projection_unit_norm():
    current, warped = torch.randn(2, 4, 3, 5), torch.randn(2, 4, 3, 5)
    torch.testing.assert_close(ScoreFusion(4)(current, warped), current)
    embeddings = ProjectionHead(6, 8, 16)(torch.randn(2, 6, 3, 5))
    assert embeddings.shape == (2, 16, 3, 5)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(2, 3, 5))


def test_unknown_fusion_is_rejected():
    with pytest.raises(ValueError, match="unknown fusion"):
        build_fusion("multiply", 4)
