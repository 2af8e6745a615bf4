"""The model family: exact parameter counts, block anatomy, the residual/SE/stochastic-depth rules."""

import math

import pytest
import torch

import ev2lite
from ev2lite.blocks import FusedMBConv, MBConv, SqueezeExcite
from ev2lite.configs import CONFIGS, SMALL_CONFIGS, round_channels

# REFERENCE.md section 1 (torchvision and timm agree), 1000 classes.
PARAMS = {
    "efficientnetv2_s": 21_458_488, "efficientnetv2_m": 54_139_356,
    "efficientnetv2_l": 118_515_272, "efficientnetv2_xl": 208_119_808,
    "efficientnetv2_b0": 7_139_704, "efficientnetv2_b1": 8_141_052,
    "efficientnetv2_b2": 10_096_086, "efficientnetv2_b3": 14_358_406,
    "efficientnet_b0": 5_288_548, "efficientnet_b1": 7_794_184, "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232, "efficientnet_b4": 19_341_616, "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704, "efficientnet_b7": 66_347_960,
}


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", PARAMS)
def test_parameter_count_matches_reference(name):
    with torch.device("meta"):  # no memory, no init cost
        model = ev2lite.create_model(name)
    assert n_params(model) == PARAMS[name]


def test_registry_lists_the_16_published_models_and_small_variants():
    names = ev2lite.list_models()
    assert set(PARAMS) <= set(names)
    assert set(SMALL_CONFIGS) <= set(names)
    assert len(CONFIGS) == 16


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match="efficientnetv2_s"):
        ev2lite.create_model("efficientnet_v2_s")
    with pytest.raises(TypeError, match="width_mult"):
        ev2lite.create_model("efficientnetv2_s", widht_mult=2)


def test_overrides_scale_width_and_depth():
    with torch.device("meta"):
        base = ev2lite.create_model("efficientnetv2_b0")
        wide = ev2lite.create_model("efficientnetv2_b0", width_mult=1.5)
        deep = ev2lite.create_model("efficientnetv2_b0", depth_mult=2.0)
    assert n_params(wide) > n_params(base) and n_params(deep) > n_params(base)
    assert [len(s) for s in deep.stages] == [2 * len(s) for s in base.stages]
    assert wide.stem.conv.out_channels == round_channels(32 * 1.5) == 48


def test_v2s_stage_table_matches_paper_table4():
    model = ev2lite.create_model("efficientnetv2_s")
    table = [(type(s[0]).__name__, s[0].conv_pwl.conv.out_channels
              if not isinstance(s[0].conv_pwl, torch.nn.Identity) else s[0].conv_exp.conv.out_channels,
              len(s)) for s in model.stages]
    assert table == [("FusedMBConv", 24, 2), ("FusedMBConv", 48, 4), ("FusedMBConv", 64, 4),
                     ("MBConv", 128, 6), ("MBConv", 160, 9), ("MBConv", 256, 15)]
    assert model.stem.conv.out_channels == 24 and model.head.conv.out_channels == 1280
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


@pytest.mark.parametrize("block,stride,cin,cout", [
    (MBConv, 1, 16, 16), (MBConv, 2, 16, 24), (FusedMBConv, 1, 24, 24), (FusedMBConv, 2, 24, 48)])
def test_block_shapes_and_residual_rule(block, stride, cin, cout):
    m = block(cin, cout, 3, stride, expand_ratio=4).eval()
    x = torch.randn(2, cin, 16, 16)
    assert m(x).shape == (2, cout, 16 // stride, 16 // stride)
    assert m.has_skip == (stride == 1 and cin == cout)
    if m.has_skip:  # zeroing the last norm's scale leaves exactly the shortcut
        torch.nn.init.zeros_(m.conv_pwl.bn.weight)
        torch.nn.init.zeros_(m.conv_pwl.bn.bias)
        assert torch.equal(m(x), x)


def test_fused_expand_ratio_1_is_a_single_conv():
    m = FusedMBConv(24, 24, 3, 1, expand_ratio=1)
    assert isinstance(m.conv_pwl, torch.nn.Identity)
    assert n_params(m) == 24 * 24 * 9 + 2 * 24


def test_se_width_comes_from_block_input_channels():
    m = MBConv(40, 80, 3, 2, expand_ratio=6, se_ratio=0.25)
    assert isinstance(m.se, SqueezeExcite)
    assert m.se.conv_reduce.in_channels == 240 and m.se.conv_reduce.out_channels == 10


def test_no_se_in_fused_stages_and_se_in_mbconv_stages():
    model = ev2lite.create_model("efficientnetv2_s")
    for stage in model.stages:
        for block in stage:
            assert isinstance(block.se, SqueezeExcite) == isinstance(block, MBConv)


@pytest.mark.parametrize("name,n_stages", [("efficientnetv2_s", 6), ("efficientnet_b0", 7)])
def test_parts_cover_the_model_in_forward_order(name, n_stages):
    with torch.device("meta"):
        model = ev2lite.create_model(name)
    parts = model.parts()
    assert list(parts) == ["stem", *(f"stage {i}" for i in range(1, n_stages + 1)), "head",
                           "classifier"]
    assert parts["stage 1"] is model.stages[0] and parts["classifier"] is model.classifier
    assert sum(n_params(part) for part in parts.values()) == n_params(model) == PARAMS[name]


def test_stochastic_depth_schedule_is_linear_in_block_index():
    model = ev2lite.create_model("efficientnetv2_b0", stochastic_depth=0.2)
    blocks = [b for s in model.stages for b in s]
    assert [b.drop_path.p for b in blocks] == pytest.approx([0.2 * i / len(blocks) for i in range(len(blocks))])
    model.set_regularization(dropout=0.4, stochastic_depth=0.3)
    assert model.dropout.p == 0.4
    assert blocks[-1].drop_path.p == pytest.approx(0.3 * (len(blocks) - 1) / len(blocks))


def test_stochastic_depth_drops_whole_samples_only_in_training():
    m = MBConv(8, 8, 3, 1, expand_ratio=2, drop_prob=0.5)
    x = torch.randn(64, 8, 4, 4)
    torch.manual_seed(0)
    m.train()
    out = m(x)
    dropped = [torch.equal(out[i], x[i]) for i in range(64)]
    assert 10 < sum(dropped) < 54  # about half the samples keep only the shortcut
    m.eval()
    assert not any(torch.equal(a, b) for a, b in zip(m(x), x))


@pytest.mark.parametrize("name,size", [("efficientnetv2_b0", 64), ("efficientnet_b0", 64),
                                       ("efficientnetv2_cifar", 32), ("efficientnet_cifar", 32),
                                       ("efficientnetv2_imagenette", 64)])
def test_forward_shapes(name, size):
    model = ev2lite.create_model(name, num_classes=10).eval()
    assert model(torch.randn(2, 3, size, size)).shape == (2, 10)
    assert model.forward_features(torch.randn(1, 3, size, size)).shape[-1] == math.ceil(
        size / model.cfg.min_size)


def test_too_small_image_gives_a_clear_error():
    model = ev2lite.create_model("efficientnetv2_b0", num_classes=10)
    with pytest.raises(ValueError, match="at least 32x32 px.*efficientnetv2_cifar"):
        model(torch.randn(1, 3, 16, 16))


def test_bad_padding_and_dataset_are_refused():
    with pytest.raises(ValueError, match="unknown padding 'valid'.*symmetric, same"):
        ev2lite.create_model("efficientnetv2_cifar", padding="valid")
    with pytest.raises(ValueError, match="no mean/std for dataset 'mnist'.*cifar10"):
        ev2lite.create_model("efficientnetv2_cifar", dataset="mnist")


def test_small_variants_are_documented_and_cpu_sized():
    for name, cfg in SMALL_CONFIGS.items():
        with torch.device("meta"):
            model = ev2lite.create_model(name, num_classes=10)
        assert n_params(model) < 2_000_000, name
    assert SMALL_CONFIGS["efficientnetv2_cifar"].min_size == 16
