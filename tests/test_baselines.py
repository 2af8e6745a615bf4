"""The reference ResNets, counted against independent sources: torchvision's resnet18 and the
CIFAR-10 ResNet-18 of the literature (11,173,962 parameters, e.g. kuangliu/pytorch-cifar)."""

import pytest
import torch
import torchvision

from ev2lite.baselines import HALF_WIDTH, resnet18


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_resnet18_has_torchvisions_parameters_and_the_cifar_variant_the_literatures():
    assert count(resnet18()) == count(torchvision.models.resnet18(num_classes=10)) == 11_181_642
    assert count(resnet18(small_input=True)) == 11_173_962
    assert count(resnet18(channels=HALF_WIDTH)) == 2_817_546


def test_the_small_input_variant_keeps_a_4x4_map_at_32_px():
    model = resnet18(channels=HALF_WIDTH, small_input=True).eval()
    features = model.forward_features(torch.zeros(2, 3, 32, 32))
    assert features.shape == (2, 256, 4, 4) and model(torch.zeros(2, 3, 16, 16)).shape == (2, 10)


def test_a_stride_2_stem_quarters_the_multiply_adds_and_keeps_the_parameters():
    from ev2lite.measure import multiply_adds

    one, two = (resnet18(channels=HALF_WIDTH, small_input=True, stem_stride=s) for s in (1, 2))
    assert count(one) == count(two)
    assert multiply_adds(two, 32) / multiply_adds(one, 32) == pytest.approx(0.25, rel=0.02)
    assert two.eval().forward_features(torch.zeros(1, 3, 32, 32)).shape[-1] == 2
