"""Exactness beyond counts: torchvision's (and timm's) weights in our modules give their outputs."""

import pytest
import timm
import torch
import torchvision

import ev2lite
from ev2lite.weights import TORCHVISION_NAMES, load_state_dict_by_order, load_weights


def randomize_norm_stats(model):
    """Fresh BN layers are nearly the identity in eval mode; give them real statistics."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


@pytest.mark.parametrize("tv_name", sorted(TORCHVISION_NAMES))
def test_outputs_equal_torchvision_after_loading(tv_name):
    torch.manual_seed(0)
    tv = randomize_norm_stats(getattr(torchvision.models, tv_name)()).eval()
    ours = ev2lite.from_torchvision(tv, TORCHVISION_NAMES[tv_name]).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), rtol=0, atol=1e-5)


def test_model_is_inferred_from_the_weights():
    tv = torchvision.models.efficientnet_b1(num_classes=10)
    assert ev2lite.from_torchvision(tv).cfg.name == "efficientnet_b1"


def test_incompatible_weights_are_refused():
    tv = torchvision.models.efficientnet_b0()
    with pytest.raises(ValueError, match="no ev2lite model matches"):
        ev2lite.from_torchvision(tv, "efficientnet_b1")
    with pytest.raises(ValueError, match="incompatible weights"):
        load_state_dict_by_order(ev2lite.create_model("efficientnet_b0", num_classes=10), tv.state_dict())


def test_weights_file_round_trip(tmp_path):
    tv = randomize_norm_stats(torchvision.models.efficientnet_b0(num_classes=10)).eval()
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    ours = load_weights(ev2lite.create_model("efficientnet_b0", num_classes=10), tmp_path / "tv.pth").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), rtol=0, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_weights(ours, tmp_path / "missing.pth")


def test_to_torchvision_gives_torchvision_our_outputs():
    ours = randomize_norm_stats(ev2lite.create_model("efficientnet_b0", num_classes=10)).eval()
    tv = ev2lite.to_torchvision(ours)
    assert isinstance(tv, torchvision.models.EfficientNet) and not tv.training
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(tv(x), ours(x), rtol=0, atol=1e-5)
    for model, match in [(ev2lite.create_model("efficientnetv2_b0"), "torchvision has no"),
                         (ev2lite.create_model("efficientnet_b0", act="relu"), r"\['act'\]"),
                         (ev2lite.create_model("efficientnet_b0", num_classes=0), "linear")]:
        with pytest.raises(ValueError, match=match):
            ev2lite.to_torchvision(model)


@pytest.mark.parametrize("name,timm_name,overrides", [
    ("efficientnetv2_b0", "tf_efficientnetv2_b0", {}),
    ("efficientnet_b0", "tf_efficientnet_b0", {"bn_eps": 1e-3})])
def test_same_padding_runs_timm_tf_weights_exactly(name, timm_name, overrides):
    torch.manual_seed(0)  # timm's model has random weights: nothing is downloaded
    theirs = randomize_norm_stats(timm.create_model(timm_name)).eval()
    x = torch.randn(2, 3, 64, 64)  # even sides: SAME pads stride-2 convs asymmetrically
    outputs = {}
    for padding in ("same", "symmetric"):
        ours = ev2lite.create_model(name, padding=padding, **overrides)
        load_state_dict_by_order(ours, theirs.state_dict())
        with torch.no_grad():
            outputs[padding] = ours.eval()(x)
    with torch.no_grad():
        torch.testing.assert_close(outputs["same"], theirs(x), rtol=0, atol=1e-5)
    assert not torch.allclose(outputs["symmetric"], outputs["same"], atol=1e-3)
