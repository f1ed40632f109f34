import pytest
import torch

from conftest import TOY_SETTINGS, make_tiny_model
from stpl.config import build_config
from stpl.errors import StplError
from stpl.models import build_model
from stpl.models.backbones import find_mobilenet_v2_weights
from stpl.models.fusion import FUSIONS


@pytest.mark.parametrize("size", [(33, 65), (40, 29)])
def test_any_resolution(size):
    model = make_tiny_model(num_classes=5).eval()
    images = torch.randn(2, 3, *size)
    out = model(images, images, torch.zeros(2, 2, *size), with_embeddings=True)
    h, w = out.logits.shape[-2:]
    assert (h, w) == ((size[0] + 7) // 8, (size[1] + 7) // 8)
    assert out.logits.shape == out.frame_logits.shape == (2, 5, h, w)
    assert out.embeddings.shape == (2, 8, h, w)
    assert out.valid.all()


def test_fused_prediction_starts_equal_to_current_frame():
    model = make_tiny_model().eval()
    current, previous = torch.randn(1, 3, 33, 47), torch.randn(1, 3, 33, 47)
    out = model(current, previous, torch.randn(1, 2, 33, 47))
    # identity-initialised score fusion: 1 x frame logits + 0 x warped ones, exact up to an ulp (default tolerance)
    torch.testing.assert_close(out.logits, out.frame_logits)


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_every_parameter_gets_a_gradient(fusion):
    model = make_tiny_model(fusion=fusion).train()
    current, previous = torch.randn(2, 3, 33, 47), torch.randn(2, 3, 33, 47)
    flow = torch.randn(2, 2, 33, 47)
    out = model(current, previous, flow, with_embeddings=True)
    # Score fusion only gets gradient through its warped half if the warped logits differ from zero; any
    # non-degenerate loss of logits and embeddings must reach every parameter.
    loss = (out.logits**2).mean() + (out.embeddings[:, :1] * out.embeddings[:, 1:2]).mean()
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_previous_frame_has_no_gradient_by_default():
    model = make_tiny_model().train()
    previous = torch.randn(1, 3, 33, 47, requires_grad=True)
    out = model(torch.randn(1, 3, 33, 47), previous, torch.zeros(1, 2, 33, 47), with_embeddings=True)
    out.logits.sum().backward()
    assert previous.grad is None
    previous2 = torch.randn(1, 3, 33, 47, requires_grad=True)
    out = model(torch.randn(1, 3, 33, 47), previous2, torch.zeros(1, 2, 33, 47), grad_previous=True)
    (out.logits * torch.randn_like(out.logits)).sum().backward()
    assert previous2.grad is not None


def test_mobilenet_v2_loads_torchvision_imagenet_weights():
    try:
        path = find_mobilenet_v2_weights()
    except StplError:
        pytest.skip("offline ImageNet weights package not installed")
    model = build_model(3, backbone="mobilenet_v2", pretrained=True, output_stride=8)
    state = torch.load(path, map_location="cpu", weights_only=True)
    # loaded, not computed: exact
    torch.testing.assert_close(model.backbone.features[0][0].weight, state["features.0.0.weight"], rtol=0, atol=0)
    torch.testing.assert_close(
        model.backbone.features[17].conv[2].weight, state["features.17.conv.2.weight"], rtol=0, atol=0
    )
    out = model.eval()(torch.randn(1, 3, 33, 47), torch.randn(1, 3, 33, 47), torch.zeros(1, 2, 33, 47))
    assert out.logits.shape == (1, 3, 5, 6)


def test_missing_explicit_weights_path_is_a_clear_error(tmp_path):
    with pytest.raises(StplError, match="ImageNet weights not found"):
        build_model(3, weights_path=str(tmp_path / "nope.pth"))


def test_warp_error_limit_falls_back_to_the_current_frame_where_the_earlier_one_disagrees():
    torch.manual_seed(0)
    current = torch.randn(1, 3, 32, 48)
    previous = current.clone()
    previous[..., :, 24:] = torch.randn(1, 3, 32, 24)  # right half of the earlier frame shows something else
    flow = torch.zeros(1, 2, 32, 48)
    model = make_tiny_model().eval()
    with torch.no_grad():
        model.score_fusion.conv.weight.normal_()  # a fusion that does use the earlier frame
        plain = model(current, previous, flow)
        model.warp_error_limit = 0.5
        gated = model(current, previous, flow)
    assert plain.valid.all()
    assert gated.valid[0, :, :3].all() and not gated.valid[0, :, 3:].any()  # feature cells are 8 pixels wide
    # Both exact: the fallback copies the current features, and the valid cells see the same inputs through the
    # same per-pixel fusion; the default tolerance only covers an ulp.
    torch.testing.assert_close(gated.warped_features[..., 3:], gated.features[..., 3:])
    torch.testing.assert_close(gated.logits[..., :3], plain.logits[..., :3])
    assert not torch.allclose(gated.logits[..., 3:], plain.logits[..., 3:])


def test_warp_error_limit_is_read_from_the_config_and_checked():
    config = build_config(sets=[*TOY_SETTINGS, "model.warp_error_limit=0.25"])
    assert build_model(3, **config.model.network_options()).warp_error_limit == 0.25
    with pytest.raises(StplError, match="warp_error_limit"):
        build_config(sets=[*TOY_SETTINGS, "model.warp_error_limit=-1"])


def test_a_cached_earlier_frame_gives_the_same_prediction():
    """Streaming: the previous step's (features, frame_logits) for frame t-k stand in for its encoder pass."""
    torch.manual_seed(0)
    model = make_tiny_model(num_classes=4).eval()
    frames = torch.randn(3, 1, 3, 33, 47)
    flow = torch.randn(1, 2, 33, 47)
    with torch.no_grad():
        earlier = model(frames[0], frames[0], torch.zeros_like(flow))
        plain = model(frames[1], frames[0], flow)
        cached = model(frames[1], frames[0], flow, previous_encoded=(earlier.features, earlier.frame_logits))
    # the cached encoding is the same batch-of-1 encoder pass on the same frame: bit-equal, tolerance unused
    torch.testing.assert_close(cached.logits, plain.logits)
    torch.testing.assert_close(cached.warped_features, plain.warped_features)


def test_a_window_of_consecutive_pairs_encodes_each_frame_once_with_the_same_prediction():
    from stpl.models.segmenter import earlier_frame_sources, predict_sharing_frames

    torch.manual_seed(0)
    model = make_tiny_model(num_classes=4).eval()
    frames = torch.randn(6, 3, 33, 47)
    current, previous = frames[1:].clone(), frames[:-1].clone()
    previous[0] = current[0]  # the stream's first frame, paired with itself
    previous[3] = torch.randn(3, 33, 47)  # a pair whose earlier frame no pair holds as frame t
    flow = torch.randn(5, 2, 33, 47)
    assert earlier_frame_sources(current, previous) == [0, 0, 1, None, 3]
    encoded = []
    model.backbone.register_forward_hook(lambda module, inputs, output: encoded.append(len(inputs[0])))
    with torch.no_grad():
        plain = model(current, previous, flow)
        encoded.clear()
        shared = predict_sharing_frames(model, current, previous, flow)
    assert encoded == [5, 1]  # 6 distinct frames, not 10
    # the same frames pass the same layers in batches of other sizes: equal up to float rounding
    torch.testing.assert_close(shared.logits, plain.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared.warped_logits, plain.warped_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared.valid, plain.valid)
