"""Graphcore's practical EfficientNet (REFERENCE.md section 4): Proxy Norm against its formula,
G16 group convolutions and batch-independent norms as builder options, and the last-layer
fine-tune of reduced-resolution training."""

from dataclasses import replace
from statistics import NormalDist

import pandas as pd
import pytest
import torch
from torch import nn

import ev2lite
from ev2lite.blocks import NORMS, ConvBNAct, MBConv
from ev2lite.configs import G16, scaled_stages
from ev2lite.data import ImageDataset
from ev2lite.models import get_config, stage_table
from ev2lite.proxynorm import ProxyNormAct, proxy_quantiles
from ev2lite.resolution import (finetune_last_layers, half_pixel_size, only_last_layers,
                                resolution_sweep)
from ev2lite.recipe import Recipe, Stage


def n_params(model):
    return sum(p.numel() for p in model.parameters())


# --- Proxy Norm ---------------------------------------------------------------------------

def test_proxy_quantiles_are_the_normal_quantiles_at_k_plus_half_over_n():
    q = proxy_quantiles(200, torch.float64)
    expected = [NormalDist().inv_cdf((k + 0.5) / 200) for k in range(200)]
    assert torch.allclose(q, torch.tensor(expected, dtype=torch.float64), atol=1e-9)
    assert abs(float(q.mean())) < 1e-12 and 0.97 < float(q.var(unbiased=False)) < 1


def direct_proxy_norm(x, g, b, g_proxy, b_proxy, act, n=200, eps=0.03):
    """PN(x) written from REFERENCE.md section 4, channel by channel, with its own quantiles."""
    q = torch.tensor([NormalDist().inv_cdf((k + 0.5) / n) for k in range(n)], dtype=x.dtype)
    out = []
    for c in range(x.shape[1]):
        y = b_proxy[c] + (1 + g_proxy[c]) * q  # Y ~ N(b', (1 + g')^2)
        z = act(g[c] * y + b[c])
        mean = z.sum() / n
        var = ((z - mean) ** 2).sum() / n
        out.append((act(g[c] * x[:, c] + b[c]) - mean) / torch.sqrt(var + eps))
    return torch.stack(out, 1)


def random_pn(channels, act=nn.SiLU, dtype=torch.float64):
    torch.manual_seed(0)
    pn = ProxyNormAct(channels, act()).to(dtype)
    with torch.no_grad():
        for p in pn.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return pn


@pytest.mark.parametrize("act", [nn.SiLU, nn.ReLU])
def test_proxy_norm_equals_the_formula_and_so_do_its_gradients(act):
    pn = random_pn(3, act)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    params = [pn.weight, pn.bias, pn.proxy_weight, pn.proxy_bias]
    ours = pn(x)
    direct = direct_proxy_norm(x, *params, act())
    assert torch.allclose(ours, direct, atol=1e-10)
    w = torch.randn_like(ours)
    grads = torch.autograd.grad((ours * w).sum(), [x, *params])
    expected = torch.autograd.grad((direct * w).sum(), [x, *params])
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, atol=1e-10)
    # g' and b' act only through the proxy statistics: non-zero gradients show they flow there
    assert grads[3].abs().sum() > 0 and grads[4].abs().sum() > 0


def test_proxy_norm_passes_gradcheck_in_float64():
    pn = random_pn(2)
    x = torch.randn(1, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in pn.named_parameters()]

    def f(x, *values):
        return torch.func.functional_call(pn, dict(zip(names, values)), (x,))

    values = [p.detach().clone().requires_grad_() for p in pn.parameters()]
    assert torch.autograd.gradcheck(f, (x, *values))


def test_proxy_norm_output_is_normalized_when_its_input_is_the_proxy():
    """Fed samples of its own proxy distribution, each channel comes out centred, with variance
    about V / (V + eps), V the activation's variance over the 200 proxy quantiles."""
    pn = random_pn(4)
    torch.manual_seed(1)
    y = pn.proxy_bias + (1 + pn.proxy_weight) * torch.randn(20000, 4, dtype=torch.float64)
    with torch.no_grad():
        out = pn(y[:, :, None, None])[:, :, 0, 0]
        v = pn.proxy_stats()[1]
    assert out.mean(0).abs().max() < 0.05
    assert torch.allclose(out.var(0), v / (v + pn.eps), rtol=0.1)


# --- norms and G16 as builder options -----------------------------------------------------

def mbconv_params(cin, cout, k, e, se, group_size, norm):
    """Parameters of one MBConv, counted by hand (no biases in convs; SE convs have biases)."""
    mid = cin * e
    per_norm = {"bn": 2, "gn": 2, "ln": 2, "ln_pn": 4, "gn_pn": 4}[norm]  # per channel
    linear_norm = 2  # the projection keeps an affine norm (no Proxy Norm without activation)
    sq = max(1, int(cin * se))
    return (cin * mid + per_norm * mid                       # 1x1 expand
            + mid * group_size * k * k + per_norm * mid      # spatial conv, mid/group_size groups
            + mid * sq + sq + sq * mid + mid                 # SE
            + mid * cout + linear_norm * cout)               # 1x1 projection


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("group_size,e", [(1, 6), (16, 4), (16, 6)])
def test_mbconv_parameter_count_by_hand(norm, group_size, e):
    block = MBConv(32, 48, 5, 2, e, 0.25, group_size=group_size, norm=norm)
    assert n_params(block) == mbconv_params(32, 48, 5, e, 0.25, group_size, norm)
    assert block.conv_dw.conv.groups == 32 * e // group_size
    assert block(torch.randn(2, 32, 8, 8)).shape == (2, 48, 4, 4)


def test_g16_changes_only_spatial_convs_and_mbconv_expand_ratios():
    base = get_config("efficientnet_imagenette")
    g16 = get_config("efficientnet_imagenette", **G16)
    stages, stages16 = scaled_stages(base), scaled_stages(g16)
    assert [s.expand_ratio for s in stages] == [1, 6, 6, 6, 6, 6, 6]
    assert [s.expand_ratio for s in stages16] == [1, 4, 4, 4, 4, 4, 4]
    with torch.device("meta"):
        g1e6 = ev2lite.create_model("efficientnet_imagenette", num_classes=10)
        g16e6 = ev2lite.create_model("efficientnet_imagenette", num_classes=10, group_size=16)
    # the only difference at equal expand ratio: each spatial conv holds 16x the weights
    extra = sum(15 * s.in_channels * s.expand_ratio * s.kernel ** 2
                + 15 * (s.repeats - 1) * s.out_channels * s.expand_ratio * s.kernel ** 2
                for s in stages)
    assert n_params(g16e6) - n_params(g1e6) == extra
    assert all(b.conv_dw.conv.weight.shape[1] == 16 for st in g16e6.stages for b in st)
    assert stage_table(g16).operator.iloc[2] == "MBConv4, k3x3, SE0.25, G16"
    # V2: Fused-MBConv stages keep their ratio and have no spatial group conv to change
    v2 = scaled_stages(get_config("efficientnetv2_b0", **G16))
    assert [s.expand_ratio for s in v2] == [1, 4, 4, 4, 4, 4]


def test_published_configs_are_unchanged_by_default():
    cfg = get_config("efficientnetv2_s")
    assert cfg.group_size == 1 and cfg.expand_ratio is None and cfg.norm == "bn"
    with torch.device("meta"):
        assert n_params(ev2lite.create_model("efficientnetv2_s")) == 21_458_488


@pytest.mark.parametrize("norm", NORMS)
def test_norm_options_build_train_and_only_bn_depends_on_the_batch(norm):
    torch.manual_seed(0)
    model = ev2lite.create_model("efficientnetv2_cifar", num_classes=10, norm=norm, dropout=0.0,
                                 stochastic_depth=0.0, zero_init_last=False, **G16).train()
    x = torch.randn(4, 3, 32, 32)
    assert model(x).shape == (4, 10)
    # In training mode a sample's output depends on the rest of the batch only with BatchNorm.
    # Compared in float64: float32 kernels differ by batch size and CPU by ~1e-5 (noise), while
    # float64 leaves ~1e-14 for batch-independent norms against a difference of order 1 for BN.
    model, x = model.double(), x.double()
    full = model(x)
    assert torch.allclose(model(x[:2]), full[:2], rtol=0, atol=1e-9) == (norm != "bn")
    groups = {m.num_groups for m in model.modules() if isinstance(m, nn.GroupNorm)}
    assert groups == {"bn": set(), "gn": {4}, "gn_pn": {4}, "ln": {1}, "ln_pn": {1}}[norm]
    pn = [m for m in model.modules() if isinstance(m, ProxyNormAct)]
    assert bool(pn) == norm.endswith("_pn")
    if pn:  # every activated conv carries Proxy Norm; every projection keeps an affine norm
        convs = [m for m in model.modules() if isinstance(m, ConvBNAct)]
        assert all(isinstance(c.act, ProxyNormAct) != c.bn.affine for c in convs)
    nn.functional.cross_entropy(full, torch.tensor([0, 1, 2, 3])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_bad_group_sizes_norms_and_expand_ratios_are_refused():
    with pytest.raises(ValueError, match="group_size 5 does not divide"):
        ev2lite.create_model("efficientnetv2_cifar", group_size=5)
    with pytest.raises(ValueError, match="group_size 0"):
        MBConv(16, 16, group_size=0)
    with pytest.raises(ValueError, match="unknown norm 'bn_pn'.*ln_pn"):
        ev2lite.create_model("efficientnetv2_cifar", norm="bn_pn")
    with pytest.raises(ValueError, match="unknown norm 'layer'"):
        ConvBNAct(3, 8, norm="layer")
    with pytest.raises(ValueError, match="expand_ratio must be"):
        ev2lite.create_model("efficientnetv2_cifar", expand_ratio=0)
    with pytest.raises(TypeError, match="group_size"):
        ev2lite.create_model("efficientnetv2_cifar", groupsize=16)


# --- reduced-resolution training ----------------------------------------------------------

def test_half_pixel_size_follows_the_mod_32_rule():
    assert half_pixel_size(224) == 160 and half_pixel_size(128) == 96 and half_pixel_size(96) == 64
    assert half_pixel_size(32, 8) == 24
    for native in (96, 128, 224, 320):
        size = half_pixel_size(native)
        assert size % 32 == native % 32 and 0.4 < (size / native) ** 2 < 0.6
    with pytest.raises(ValueError, match="native > multiple"):
        half_pixel_size(32)


def tiny_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return ImageDataset(images, torch.arange(n) % 10, [str(c) for c in range(10)], "cifar10",
                        "train")


@pytest.mark.parametrize("trainable,changed", [
    ("head", ("head.", "classifier.")), ("last_stage", ("stages.5.", "head.", "classifier."))])
def test_finetune_changes_only_the_last_layers(one_thread, trainable, changed):
    torch.manual_seed(0)
    model = ev2lite.create_model("efficientnetv2_cifar", num_classes=10)
    with only_last_layers(model, trainable) as frozen:
        trainable_names = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable_names and all(n.startswith(changed) for n in trainable_names)
        assert not any(p.requires_grad for m in frozen for p in m.parameters())
        model.train()(torch.randn(2, 3, 32, 32))
        assert not any(m.training for f in frozen for m in f.modules())
        assert model.head.training and model.dropout.training
    assert all(p.requires_grad for p in model.parameters())  # restored on exit
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = finetune_last_layers(model, tiny_data(32, 0), tiny_data(20, 1), 40, epochs=1,
                                   recipe=Recipe(batch_size=16, lr=0.5, warmup_epochs=0),
                                   trainable=trainable)
    assert history.image_size.tolist() == [40] and len(history) == 1
    after = model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith(changed) for k in moved)
    assert {k.split(".")[0] for k in moved} == {c.split(".")[0] for c in changed}
    assert "head.bn.running_mean" in moved  # the head's norm adapts to the new size


def test_a_cached_sweep_is_read_back_and_other_test_sizes_are_another_sweep(tmp_path, one_thread, monkeypatch):
    import ev2lite.resolution as resolution
    recipe = Recipe(batch_size=16, lr=0.2, warmup_epochs=0)
    args = (lambda: ev2lite.create_model("efficientnetv2_cifar", num_classes=10),
            (tiny_data(32, 0), tiny_data(20, 1)), [Stage(1, 24)])
    first = resolution_sweep(*args, [24], recipe, seed=3, cache=tmp_path, scheme="half")
    assert len(list(tmp_path.glob("*.sweep.csv"))) == 1

    def no_finetune(*a, **kw):
        raise AssertionError("a cached sweep was fine-tuned again")

    monkeypatch.setattr(resolution, "finetune_last_layers", no_finetune)
    again = resolution_sweep(*args, [24], recipe, seed=3, cache=tmp_path, scheme="half")
    pd.testing.assert_frame_equal(first, again, check_dtype=False)
    with pytest.raises(AssertionError, match="fine-tuned again"):  # other test sizes: not cached
        resolution_sweep(*args, [32], recipe, seed=3, cache=tmp_path, scheme="half")


def test_finetune_trains_on_whole_images_as_at_test_time(one_thread, monkeypatch):
    from ev2lite.data import Loader
    crops, real_batch = set(), Loader._batch
    monkeypatch.setattr(Loader, "_batch", lambda self, *a: crops.add(
        (self.train, self.random_crop)) or real_batch(self, *a))
    finetune_last_layers(ev2lite.create_model("efficientnetv2_cifar", num_classes=10),
                         tiny_data(32, 0), tiny_data(20, 1), 40, recipe=Recipe(batch_size=16))
    assert crops == {(True, False), (False, False)}  # no random crops or flips, in either loader


def test_only_last_layers_refuses_unknown_parts_and_foreign_models():
    model = ev2lite.create_model("efficientnetv2_cifar", num_classes=10)
    with pytest.raises(ValueError, match="unknown trainable"):
        with only_last_layers(model, "stem"):
            pass
    with pytest.raises(TypeError, match="not an ev2lite EfficientNet"):
        with only_last_layers(nn.Linear(2, 2)):
            pass


def test_resolution_sweep_tests_every_size_with_and_without_finetune(one_thread):
    recipe = Recipe(batch_size=16, lr=0.2, warmup_epochs=0)
    table = resolution_sweep(lambda: ev2lite.create_model("efficientnetv2_cifar", num_classes=10),
                             (tiny_data(32, 0), tiny_data(20, 1)), [Stage(1, 24)], [24, 32],
                             recipe, seed=3, finetune_recipe=replace(recipe, lr=0.01))
    assert table[["test_size", "finetuned"]].values.tolist() == [
        [24, False], [24, True], [32, False], [32, True]]
    assert (table.train_size == 24).all() and (table.seed == 3).all()
    assert table.train_time_s.nunique() == 1 and table.train_time_s.iloc[0] > 0
    assert (table.finetune_time_s[table.finetuned] > 0).all()
    assert (table.finetune_time_s[~table.finetuned] == 0).all()
    assert table.test_acc.between(0, 1).all()
