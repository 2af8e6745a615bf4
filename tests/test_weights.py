"""Exactness beyond counts: torchvision's weights in our modules give torchvision's outputs."""

import pytest
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
