"""timm's model contract on ev2lite models, so they drop into timm scripts and backbones.

The core checks of timm's ``tests/test_models.py`` (forward, backward, default config, pooled
features, classifier reset, features_only), rewritten for our models at small sizes, plus
torch.fx / torchvision feature extraction, TorchScript and an ONNX round trip. Facts (image
sizes, crops, feature channels, list filtering) are compared with timm's own models and configs.
"""

import copy
import io
import math
import warnings
from fnmatch import fnmatchcase

import pytest
import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, resolve_data_config
from timm.models import FeatureListNet
from torchvision.models.feature_extraction import create_feature_extractor

import ev2lite
from ev2lite.configs import CONFIGS
from ev2lite.data import NORMALIZATION
from ev2lite.models import pretrained_cfg

# ev2lite name -> (test image side in px, timm model of the same architecture and its kwargs).
# The CIFAR variant is V2-B0 at half width and depth with a stride-1 stem; timm has the first two.
MODELS = {
    "efficientnet_b0": (64, "efficientnet_b0", {}),
    "efficientnetv2_b0": (64, "tf_efficientnetv2_b0", {}),
    "efficientnetv2_s": (64, "tf_efficientnetv2_s", {}),
    "efficientnetv2_cifar": (32, "tf_efficientnetv2_b0",
                             {"channel_multiplier": 0.5, "depth_multiplier": 0.5}),
}
names = pytest.mark.parametrize("name", MODELS)


def build(name, **kwargs):
    """A seeded model with a random classifier (the CIFAR variant's zero one would make the
    equalities below trivial)."""
    torch.manual_seed(0)
    return ev2lite.create_model(name, zero_init_last=False, **kwargs)


def images(name, batch=2):
    return torch.randn(batch, 3, MODELS[name][0], MODELS[name][0])


def timm_weights_cfg(name):
    """timm's config of the official weights ported from TF (ImageNet-1k ones where they exist)."""
    tags = timm.list_pretrained(f"tf_{name}.*")
    return timm.models.get_pretrained_cfg(next((t for t in tags if t.endswith(".in1k")), tags[0]))


@names
def test_forward(name):
    with torch.no_grad():
        out = build(name).eval()(images(name))
    assert out.shape == (2, 1000) and out.isfinite().all()


@names
def test_backward_reaches_every_parameter(name):
    model = build(name, num_classes=42).train()
    out = model(images(name))
    out.mean().backward()
    assert out.shape == (2, 42)
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("name", CONFIGS)
def test_image_sizes_and_crops_are_those_of_the_official_weights(name):
    ours, official = pretrained_cfg(CONFIGS[name], 1000), timm_weights_cfg(name).to_dict()
    for test_size in (False, True):
        a, b = (resolve_data_config(pretrained_cfg=c, use_test_size=test_size)
                for c in (ours, official))
        assert (a["input_size"], a["interpolation"]) == (b["input_size"], b["interpolation"])
        assert a["crop_pct"] == pytest.approx(b["crop_pct"], abs=1e-3)  # timm rounds to 3 places
    assert ours["pool_size"] == official["pool_size"]


@names
def test_default_cfg(name):
    model = build(name)
    cfg = resolve_data_config(model=model)
    if name.endswith("cifar"):
        assert cfg["input_size"] == (3, 32, 32) and cfg["crop_pct"] == 1.0
        assert (cfg["mean"], cfg["std"]) == NORMALIZATION["cifar10"] != (IMAGENET_DEFAULT_MEAN,
                                                                          IMAGENET_DEFAULT_STD)
    else:
        assert (cfg["mean"], cfg["std"]) == (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    assert model.default_cfg is model.pretrained_cfg
    state = model.state_dict()
    assert {f"{model.pretrained_cfg[k]}.weight" for k in ("first_conv", "classifier")} <= set(state)
    with torch.device("meta"):  # the feature map at the full default size, without computing it
        features = build(name).forward_features(torch.empty(1, *cfg["input_size"]))
    assert tuple(features.shape[-2:]) == model.pretrained_cfg["pool_size"]


@names
def test_no_classifier_gives_pooled_features(name):
    x = images(name)
    model = build(name).eval()
    assert model.get_classifier() is model.classifier and model.num_classes == 1000
    with torch.no_grad():
        features = model.forward_features(x)
        assert build(name, num_classes=0)(x).shape == (2, model.num_features)
        model.reset_classifier(0)
        assert model.num_classes == 0 and torch.equal(model(x), features.mean((2, 3)))
        model.reset_classifier(0, "")
        assert torch.equal(model(x), features)
        model.reset_classifier(10, "avg")
        assert model(x).shape == (2, 10) and model.get_classifier().out_features == 10


@names
def test_forward_is_forward_features_then_forward_head(name):
    model, x = build(name).eval(), images(name)
    with torch.no_grad():
        features = model.forward_features(x)
        pooled = model.forward_head(features, pre_logits=True)
        assert features.shape == (2, model.num_features, *[math.ceil(s / model.cfg.min_size)
                                                           for s in x.shape[-2:]])
        assert pooled.shape == (2, model.num_features)
        torch.testing.assert_close(model.forward_head(features), model(x))
        torch.testing.assert_close(model.classifier(pooled), model(x))


@names
def test_features_only_maps_match_feature_info_and_timm(name):
    size, timm_name, timm_kwargs = MODELS[name]
    features = ev2lite.create_model(name, features_only=True).eval()
    with torch.device("meta"):
        theirs = timm.create_model(timm_name, features_only=True, **timm_kwargs).feature_info
    channels, reductions = features.feature_info.channels(), features.feature_info.reduction()
    assert channels == theirs.channels()
    # a stride-1 stem halves every reduction
    assert reductions == [r // (2 // ev2lite.get_config(name).stem_stride)
                          for r in theirs.reduction()]
    with torch.no_grad():
        maps = features(images(name))
    assert [m.shape for m in maps] == [(2, c, math.ceil(size / r), math.ceil(size / r))
                                       for c, r in zip(channels, reductions)]
    assert not any(n.startswith(("head", "classifier")) for n, _ in features.named_parameters())
    with torch.device("meta"):
        two = ev2lite.create_model(name, features_only=True, out_indices=(1, 3))
    assert two.feature_info.channels() == [channels[1], channels[3]]
    with torch.device("meta"), pytest.raises(ValueError, match="out_indices"):
        ev2lite.create_model(name, features_only=True, out_indices=(len(channels),))


@names
def test_fx_trace_keeps_outputs_and_the_size_check(name):
    model, x = build(name).eval(), images(name)
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="at least"):
        traced(torch.randn(1, 3, model.cfg.min_size // 2, model.cfg.min_size // 2))


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnetv2_cifar"])
def test_torchvision_feature_extractor_equals_features_only(name):
    model, x = build(name).eval(), images(name)
    nodes = {info["module"]: str(i) for i, info in enumerate(model.feature_info)}
    extractor = create_feature_extractor(model, nodes)
    listed = FeatureListNet(model, tuple(range(len(nodes))), flatten_sequential=True)  # as ours
    with torch.no_grad():
        for a, b in zip(extractor(x).values(), listed(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="at least"):
        extractor(torch.randn(1, 3, 8, 8))


def test_same_padding_traces_with_timm_conv_as_a_leaf():
    model = build("efficientnetv2_cifar", padding="same").eval()
    extractor = create_feature_extractor(model, {"stages.1": "c2"}, tracer_kwargs={
        "leaf_modules": [timm.layers.Conv2dSame]})
    assert extractor(images("efficientnetv2_cifar"))["c2"].shape == (2, 16, 16, 16)


def test_timm_keywords_map_to_ours():
    # what timm's train.py passes: keywords it leaves unset are None
    model = ev2lite.create_model("efficientnetv2_cifar", num_classes=None, pretrained=False,
                                 in_chans=1, drop_rate=0.3, drop_path_rate=0.1, global_pool="max",
                                 bn_momentum=None, bn_eps=None)
    blocks = [b for stage in model.stages for b in stage]
    assert model.num_classes == 1000 and model.dropout.p == 0.3 and model.pool.pool_type == "max"
    assert blocks[-1].drop_path.p == pytest.approx(0.1 * (len(blocks) - 1) / len(blocks))
    assert model.stem.conv.in_channels == 1
    assert resolve_data_config(model=model)["input_size"] == (1, 32, 32)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 1000)
    wide = ev2lite.create_model("efficientnetv2_cifar", num_classes=0, global_pool="catavgmax")
    assert wide(torch.randn(2, 3, 32, 32)).shape == (2, 2 * wide.num_features)
    with pytest.raises(ValueError, match="from_torchvision"):
        ev2lite.create_model("efficientnetv2_cifar", pretrained=True)
    with pytest.raises(TypeError, match="drop_path_rate"):
        ev2lite.create_model("efficientnetv2_cifar", drop_block_rate=0.1)
    with pytest.raises(ValueError, match="num_classes=0"):
        ev2lite.create_model("efficientnetv2_cifar", global_pool="")
    with pytest.raises(ValueError, match="int >= 0"):
        ev2lite.create_model("efficientnetv2_cifar", num_classes=-1)


@pytest.mark.parametrize("pattern,exclude", [("efficientnet_b*", ""), ("*v2_[sml]", "*_m"),
                                             (["efficientnet_b[0-2]", "efficientnetv2_s"],
                                              ["*b1"])])
def test_list_models_filters_like_timm(pattern, exclude):
    ours = ev2lite.list_models()
    common = set(timm.list_models(pattern, exclude_filters=exclude)) & set(ours)
    assert common  # the pattern means something in both registries
    listed = ev2lite.list_models(pattern, exclude_filters=exclude)
    assert set(listed) & set(timm.list_models()) == common
    assert listed == [n for n in ours if n in listed]  # registry order is kept
    assert ev2lite.list_models("*cifar") == [n for n in ours if fnmatchcase(n, "*cifar")] != []


def test_grad_checkpointing_recomputes_blocks_with_the_same_gradients(one_thread):
    model = build("efficientnetv2_cifar", dropout=0.0, stochastic_depth=0.0).train()
    checkpointed = copy.deepcopy(model)
    checkpointed.set_grad_checkpointing()
    calls = []
    checkpointed.stages[0][0].register_forward_pre_hook(lambda *args: calls.append(1))
    x = images("efficientnetv2_cifar")
    for m in (model, checkpointed):
        m(x).square().mean().backward()
    assert len(calls) == 2  # forward, then again in the backward pass
    for (n, a), b in zip(model.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=n)


def test_torchscript_compiles_and_keeps_the_size_check():
    model, x = build("efficientnetv2_cifar").eval(), images("efficientnetv2_cifar")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
        scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))
    with pytest.raises(torch.jit.Error, match="ValueError: .*at least 16x16"):
        scripted(torch.randn(1, 3, 8, 8))


def test_onnx_round_trip():
    pytest.importorskip("onnx", reason="ONNX export test needs the optional onnx package")
    ort = pytest.importorskip("onnxruntime", reason="ONNX round trip needs onnxruntime")
    model, buffer = build("efficientnetv2_cifar").eval(), io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter (no onnxscript) warns
        torch.onnx.export(model, (images("efficientnetv2_cifar"),), buffer, dynamo=False,
                          input_names=["images"], dynamic_axes={"images": {0: "batch"}})
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    x = images("efficientnetv2_cifar", batch=3)
    (out,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), model(x), rtol=1e-4, atol=1e-5)
