"""ResNet-101 DeepLab-v2 (ACCEL setting) and the importer of DA-VSN / TPS checkpoints.

Most tests use depth-reduced networks (one block per layer): same names and widths as ResNet-101, far less work.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stpl.config import ModelConfig
from stpl.errors import StplError
from stpl.models import VideoSegmenter, build_model
from stpl.models.accel_import import import_accel_state_dict, load_accel_checkpoint, to_peer
from stpl.models.deeplabv2 import (
    ASPP_RATES,
    CAFFE_BGR_MEAN,
    IMAGENET_MEAN,
    IMAGENET_STD,
    CaffeInput,
    DeepLabV2Head,
    DilatedSumClassifier,
    FrozenBatchNorm2d,
    ResNet101DeepLabV2,
    deeplabv2_segmenter,
    load_imagenet_weights,
)

SMALL = (1, 1, 1, 1)
NUM_CLASSES = 3


def randomise_norms(module: nn.Module) -> None:
    """Non-trivial BN statistics and affine, so that mapping and freezing are actually exercised."""
    for norm in module.modules():
        if isinstance(norm, FrozenBatchNorm2d):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(0, 0.1)
            norm.running_mean.normal_(0, 0.1)
            norm.running_var.uniform_(0.5, 2.0)


def small_model(aux_weight: float = 0.0, input_format: str = "caffe_bgr", seed: int = 0) -> VideoSegmenter:
    torch.manual_seed(seed)
    model = deeplabv2_segmenter(NUM_CLASSES, aux_weight, input_format, fusion="add", projection_dim=8, layers=SMALL)
    randomise_norms(model)
    return model


def frames(height: int = 33, width: int = 41) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    current, previous = torch.randn(2, 1, 3, height, width, generator=generator)
    return current, previous, 2 * torch.randn(1, 2, height, width, generator=generator)


def peer_state_dict(model: VideoSegmenter) -> dict[str, torch.Tensor]:
    """What a DA-VSN / TPS checkpoint of the same network holds: our names mapped back, no score-fusion bias."""
    state = {}
    for name, value in model.state_dict().items():
        peer_name = to_peer(name)
        if peer_name is not None and peer_name != "sf_layer.bias":
            state[peer_name] = value.clone()
    return state


@pytest.mark.parametrize(("aux_weight", "channels"), [(0.0, 2048), (0.1, 3072)])
def test_output_stride_8_at_odd_size(aux_weight, channels):
    model = small_model(aux_weight).eval()
    with torch.no_grad():
        out = model(*frames(33, 41), with_embeddings=True)
    # conv1 (s2) 33x41 -> 17x21, ceil-mode max-pool -> 9x11, layer2 (s2 on the 1x1) -> 5x6; layer3/4 dilated.
    assert out.logits.shape == out.frame_logits.shape == (1, NUM_CLASSES, 5, 6)
    assert out.features.shape == (1, channels, 5, 6)
    assert out.embeddings.shape == (1, 8, 5, 6)


def test_full_resnet101_structure():
    model = build_model(NUM_CLASSES, backbone="resnet101_deeplabv2", pretrained=False, fusion="add")
    backbone = model.backbone
    assert [len(layer) for layer in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4)] == [
        3,
        4,
        23,
        3,
    ]
    # torchvision's ResNet-101 has 44,549,160 parameters, 2,049,000 of them in fc; BN affine are buffers here.
    affine = sum(m.weight.numel() + m.bias.numel() for m in backbone.modules() if isinstance(m, FrozenBatchNorm2d))
    assert sum(p.numel() for p in backbone.parameters()) + affine == 44_549_160 - 2_049_000
    assert backbone.layer2[0].conv1.stride == (2, 2) and backbone.layer2[0].conv2.stride == (1, 1)
    assert backbone.layer3[0].downsample[0].stride == (1, 1) and backbone.layer4[0].conv1.stride == (1, 1)
    assert {block.conv2.dilation for block in backbone.layer3} == {(2, 2)}
    assert {block.conv2.dilation for block in backbone.layer4} == {(4, 4)}
    assert model.classifier.aux is None and model.fusion.out_channels == 2048


def test_batch_norm_stays_frozen_through_train_and_a_step():
    model = small_model().train()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.backbone.modules())
    norms = {k: v.clone() for k, v in model.backbone.state_dict().items() if "bn" in k or "downsample.1" in k}
    assert norms and not set(norms) & {f"backbone.{k}" for k, _ in model.named_parameters()}
    conv_before = model.backbone.conv1.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    out = model(*frames(), with_embeddings=True)
    (out.logits.square().mean() + out.embeddings.sum()).backward()
    optimizer.step()
    after = model.backbone.state_dict()
    for name, value in norms.items():  # buffers nothing writes: exact
        torch.testing.assert_close(after[name], value, rtol=0, atol=0, msg=name)
    assert not torch.equal(model.backbone.conv1.weight, conv_before)  # the convolutions did train
    # Train mode uses the stored statistics, not the batch's: the backbone gives the same output in both modes.
    # Same kernels on the same input: bit-identical (measured); batch statistics would move outputs by O(1).
    images = frames()[0]
    with torch.no_grad():
        trained_mode = model.backbone(images)
        torch.testing.assert_close(model.eval().backbone(images), trained_mode, rtol=0, atol=0)


def test_classifier_is_the_sum_of_four_dilated_convolutions():
    torch.manual_seed(0)
    head = DilatedSumClassifier(4, NUM_CLASSES)
    x = torch.randn(1, 4, 9, 11)
    expected = sum(
        F.conv2d(x, branch.weight, branch.bias, padding=rate, dilation=rate)
        for branch, rate in zip(head.branches, ASPP_RATES, strict=True)
    )
    assert [branch.dilation for branch in head.branches] == [(r, r) for r in (6, 12, 18, 24)]
    # Outputs ~0.1 from 36-term sums: another summation order moves them by ~1e-8, far inside the default
    # atol 1e-5, while a missing or wrongly dilated branch changes them by ~0.05.
    torch.testing.assert_close(head(x), expected)
    wide = DilatedSumClassifier(256, 19)
    weights = torch.cat([branch.weight.flatten() for branch in wide.branches])
    # N(0, 0.01) over 175,104 weights: the sample std has a sd of 0.01 / sqrt(2n) = 1.7e-5 (measured -1.8e-5),
    # so 5e-4 is ~30 sd wide yet fails the 0.001 or 0.1 of a wrong initialiser.
    assert abs(weights.std().item() - 0.01) < 5e-4 and all(not branch.bias.any() for branch in wide.branches)


def test_aux_head_adds_weighted_layer3_logits():
    torch.manual_seed(0)
    head = DeepLabV2Head(NUM_CLASSES, aux_weight=0.1)
    features = torch.randn(1, 1024 + 2048, 4, 5)
    expected = head.main(features[:, 1024:]) + 0.1 * head.aux(features[:, :1024])
    # Logits ~2 from 73,728-term float32 sums; the same convolutions here and in the head (measured bit-equal),
    # and another order would move them by ~1e-6, inside the default 1e-5 + 1.3e-6 x 2; weight 1 or 0 is off by ~0.1.
    torch.testing.assert_close(head(features), expected)
    assert DeepLabV2Head(NUM_CLASSES).aux is None


def test_caffe_input_is_bgr_255_minus_the_mean():
    rgb = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1)
    normalised = (rgb - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    expected = torch.tensor([0.0, 127.5, 255.0]) - torch.tensor(CAFFE_BGR_MEAN)
    # un-normalising and scaling to 0..255 in float32: a few ulps of 255 (measured 9.5e-7, allowed 1e-5 + 3e-4)
    torch.testing.assert_close(CaffeInput()(normalised).flatten(), expected)


@pytest.mark.parametrize("aux_weight", [0.0, 0.1])
def test_importer_maps_every_peer_parameter_and_reproduces_outputs(tmp_path, aux_weight):
    source = small_model(aux_weight, seed=1)
    with torch.no_grad():  # a trained score fusion, bias-free like the peers'
        source.score_fusion.conv.weight.normal_(0, 0.3)
        source.score_fusion.conv.bias.zero_()
    peer = peer_state_dict(source)
    extras = {"flownet.conv1.weight": torch.randn(64, 6, 7, 7), "bn1.num_batches_tracked": torch.tensor(7)}
    extras["layer1.0.downsample.1.num_batches_tracked"] = torch.tensor(7)
    if aux_weight == 0:  # a multi-level peer checkpoint loaded into a main-head-only model: layer5 is skipped
        extras.update({f"layer5.conv2d_list.{i}.weight": torch.randn(NUM_CLASSES, 1024, 3, 3) for i in range(4)})
    path = tmp_path / "accel.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in {**peer, **extras}.items()}, "iter": 5}, path)

    target = small_model(aux_weight, seed=2)
    skipped = load_accel_checkpoint(path, target)
    assert sorted(skipped) == sorted(extras)
    imported = import_accel_state_dict(peer, target)
    assert set(imported) == set(target.state_dict())
    for name, value in source.state_dict().items():
        if not name.startswith(("fusion.", "projection.")):
            torch.testing.assert_close(target.state_dict()[name], value, rtol=0, atol=0, msg=name)
    with torch.no_grad():
        expected, got = source.eval()(*frames()), target.eval()(*frames())
    # equal weights (checked exactly above) through the same kernels: the default tolerance is never needed
    torch.testing.assert_close(got.logits, expected.logits)
    torch.testing.assert_close(got.frame_logits, expected.frame_logits)


def test_importer_errors_name_the_key(tmp_path):
    model = small_model()
    peer = peer_state_dict(model)
    with pytest.raises(StplError, match=r"lacks 'layer6\.conv2d_list\.2\.bias'"):
        import_accel_state_dict({k: v for k, v in peer.items() if k != "layer6.conv2d_list.2.bias"}, model)
    wrong = {**peer, "layer6.conv2d_list.0.weight": torch.zeros(19, 2048, 3, 3)}
    with pytest.raises(StplError, match=r"'layer6\.conv2d_list\.0\.weight' has shape \(19, 2048, 3, 3\)"):
        import_accel_state_dict(wrong, model)
    with pytest.raises(StplError, match=r"'layer7\.weight' has no counterpart"):
        import_accel_state_dict({**peer, "layer7.weight": torch.zeros(1)}, model)
    with pytest.raises(StplError, match=r"lacks 'layer5\.conv2d_list\.0\.weight'"):
        import_accel_state_dict(peer, small_model(aux_weight=0.1))
    path = tmp_path / "accel.pth"
    torch.save(peer, path)
    with pytest.raises(StplError, match="input_format=caffe_bgr"):
        load_accel_checkpoint(path, small_model(input_format="imagenet"))
    with pytest.raises(StplError, match="not found"):
        load_accel_checkpoint(tmp_path / "nope.pth", model)


def test_missing_weights_are_a_clear_error_before_building(tmp_path):
    with pytest.raises(StplError, match=r"model\.weights_path=PATH"):
        build_model(NUM_CLASSES, backbone="resnet101_deeplabv2")
    with pytest.raises(StplError, match="ImageNet weights not found"):
        build_model(NUM_CLASSES, backbone="resnet101_deeplabv2", weights_path=str(tmp_path / "no.pth"))


def test_imagenet_weights_torchvision_and_caffe_files(tmp_path):
    torch.manual_seed(3)
    reference = ResNet101DeepLabV2(SMALL)
    randomise_norms(reference)
    state = reference.state_dict()
    torchvision_file = tmp_path / "resnet101.pth"
    extras = {
        "fc.weight": torch.zeros(1000, 2048),
        "fc.bias": torch.zeros(1000),
        "bn1.num_batches_tracked": torch.tensor(0),
    }
    torch.save({**state, **extras}, torchvision_file)
    backbone = ResNet101DeepLabV2(SMALL)
    load_imagenet_weights(backbone, torchvision_file)
    for name, value in state.items():
        torch.testing.assert_close(backbone.state_dict()[name], value, rtol=0, atol=0, msg=name)

    caffe_file = tmp_path / "DeepLab_resnet_pretrained_imagenet.pth"
    caffe = {f"Scale.{k}": v for k, v in state.items()} | {
        "Scale.layer5.conv2d_list.0.weight": torch.zeros(21, 2048, 3, 3)
    }
    torch.save(caffe, caffe_file)
    with pytest.raises(StplError, match="input_format=caffe_bgr"):
        load_imagenet_weights(ResNet101DeepLabV2(SMALL), caffe_file)
    load_imagenet_weights(ResNet101DeepLabV2(SMALL, input_format="caffe_bgr"), caffe_file)
    with pytest.raises(StplError, match="input_format=imagenet"):
        load_imagenet_weights(ResNet101DeepLabV2(SMALL, input_format="caffe_bgr"), torchvision_file)


def test_import_accel_command_writes_an_adaptable_checkpoint(tmp_path, capsys):
    from stpl.cli import main
    from stpl.data.synthetic_scene import SYNTHETIC_CLASSES
    from stpl.engine.checkpoint import load_checkpoint

    config = ModelConfig(backbone="resnet101_deeplabv2", pretrained=False, input_format="caffe_bgr")
    torch.manual_seed(0)
    model = build_model(len(SYNTHETIC_CLASSES), **config.network_options())
    weights = tmp_path / "davsn_source_only.pth"
    torch.save(peer_state_dict(model), weights)
    out = tmp_path / "imported.safetensors"
    sets = ["--set", "model.backbone=resnet101_deeplabv2", "--set", "model.input_format=caffe_bgr"]
    assert main(["import-accel", "--weights", str(weights), "--out", str(out), *sets]) == 0
    imported = load_checkpoint(out)
    assert imported.class_names == list(SYNTHETIC_CLASSES) and imported.config["model"]["input_format"] == "caffe_bgr"
    for name, value in model.state_dict().items():
        if name.startswith(("backbone.", "classifier.")):  # copied tensors: exact
            torch.testing.assert_close(imported.model[name], value, rtol=0, atol=0, msg=name)
    # without the backbone setting the command refuses, in one line
    assert main(["import-accel", "--weights", str(weights), "--out", str(tmp_path / "x.safetensors")]) != 0
    assert "resnet101_deeplabv2" in capsys.readouterr().err
