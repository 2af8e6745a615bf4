"""Transfer learning: a new classifier for every model kind, the fine-tuning recipe, a tiny
pre-train -> fine-tune run on real data, and fine-tuning from a torchvision weights file."""

from functools import partial

import pytest
import torch
import torchvision
from timm.models.resnet import BasicBlock, ResNet
from torchvision.models.efficientnet import MBConvConfig

import ev2lite
from ev2lite.recipe import Recipe, Stage, lr_factor
from ev2lite.transfer import (OFFICIAL_FINETUNE, classifier_name, finetune_once, finetune_recipe,
                              new_classifier, pretrain, weights_id, with_weights)


def tiny_resnet(num_classes=10):
    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes, stem_width=8,
                  channels=(8, 16, 32, 64))


def tiny_torchvision_efficientnet(num_classes=10):
    """torchvision's EfficientNet-B0 table at half width and depth: the architecture of our
    ``efficientnet_imagenette``."""
    conf = partial(MBConvConfig, width_mult=0.5, depth_mult=0.5)
    setting = [conf(1, 3, 1, 32, 16, 1), conf(6, 3, 2, 16, 24, 2), conf(6, 5, 2, 24, 40, 2),
               conf(6, 3, 2, 40, 80, 3), conf(6, 5, 1, 80, 112, 3), conf(6, 5, 2, 112, 192, 4),
               conf(6, 3, 1, 192, 320, 1)]
    return torchvision.models.EfficientNet(setting, dropout=0.1, num_classes=num_classes)


MODELS = {
    "ev2lite V2": (lambda: ev2lite.create_model("efficientnetv2_imagenette", num_classes=1000),
                   "classifier"),
    "ev2lite V1": (lambda: ev2lite.create_model("efficientnet_imagenette", num_classes=1000),
                   "classifier"),
    "torchvision EfficientNet": (lambda: tiny_torchvision_efficientnet(1000), "classifier.1"),
    "torchvision ResNet": (lambda: torchvision.models.resnet18(num_classes=1000), "fc"),
    "timm ResNet": (lambda: tiny_resnet(1000), "fc"),
}


@pytest.mark.parametrize("kind", MODELS)
def test_new_classifier_replaces_only_the_final_layer(kind, one_thread):
    make_model, expected_name = MODELS[kind]
    torch.manual_seed(0)
    model = make_model().eval()
    assert classifier_name(model) == expected_name
    before = {k: v.clone() for k, v in model.state_dict().items()}
    old_layer = model.get_submodule(expected_name)
    params = sum(p.numel() for p in model.parameters())

    assert new_classifier(model, 7) is model
    layer = model.get_submodule(expected_name)
    assert layer is not old_layer and layer.in_features == old_layer.in_features
    assert layer.weight.shape == (7, old_layer.in_features) and layer.bias.shape == (7,)
    assert not layer.weight.any() and not layer.bias.any()  # zero-initialised
    after = model.state_dict()
    assert set(after) == set(before)
    for key, value in before.items():
        if not key.startswith(expected_name + "."):
            assert torch.equal(after[key], value), key
    logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 7) and not logits.any()  # uniform prediction at the start
    assert sum(p.numel() for p in model.parameters()) == (
        params - (old_layer.out_features - 7) * (old_layer.in_features + 1))


def test_new_classifier_updates_timm_num_classes_and_refuses_bad_input():
    model = new_classifier(tiny_resnet(), 3)
    assert model.num_classes == 3 and model.get_classifier().out_features == 3
    with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
        new_classifier(tiny_resnet(), 0)
    with pytest.raises(ValueError, match="num_classes"):
        new_classifier(tiny_resnet(), 2.5)
    with pytest.raises(TypeError, match="no nn.Linear"):
        new_classifier(torch.nn.Conv2d(3, 3, 1), 3)


def test_finetune_recipe_is_the_official_one_scaled():
    official = finetune_recipe()
    assert (official.batch_size, official.optimizer, official.lr_schedule) == (512, "rmsprop", "constant")
    assert official.lr == pytest.approx(1e-3)  # 5e-4 per 256 images
    assert official.ema_decay == pytest.approx(0.9996)
    assert official.warmup_epochs == 1 and official.weight_decay == 0
    assert official.label_smoothing == 0.1 and official.momentum == 0.9
    small = finetune_recipe(batch_size=64, steps=250, eval_size=64)
    assert small.lr == pytest.approx(1.25e-4) and small.eval_size == 64
    # the EMA horizon 1 / (1 - decay) stays a quarter of the run
    assert 1 / (1 - small.ema_decay) == pytest.approx(0.25 * 250, rel=0.01)
    assert 1 / (1 - official.ema_decay) == pytest.approx(0.25 * OFFICIAL_FINETUNE["steps"])
    with pytest.raises(ValueError, match="steps >= 1"):
        finetune_recipe(steps=0)


def test_constant_schedule_holds_the_peak_after_warmup():
    recipe = Recipe(lr_schedule="constant", warmup_epochs=1)
    assert lr_factor(0, 10, 100, recipe) == pytest.approx(0.1)
    assert lr_factor(4, 10, 100, recipe) == pytest.approx(0.5)
    assert [lr_factor(s, 10, 100, recipe) for s in (9, 10, 50, 99)] == [1.0] * 4
    with pytest.raises(ValueError, match="constant"):
        Recipe(lr_schedule="linear")


@pytest.fixture(scope="module")
def imagenette_and_cifar(real_split):
    # Imagenette's test split loads faster than its train split; the two subsets may overlap:
    # what the pre-training learns is not under test here.
    source = real_split("imagenette", "test")
    source = (source.subset(64, seed=0), source.subset(32, seed=1))
    target = (real_split("cifar10", "train").subset(64), real_split("cifar10", "test").subset(32))
    return source, target


def test_pretrain_then_finetune_on_another_dataset(imagenette_and_cifar, one_thread):
    source, target = imagenette_and_cifar
    make = partial(ev2lite.create_model, "efficientnetv2_imagenette", num_classes=10)
    torch.manual_seed(0)
    initial = make().state_dict()  # the initialisation train_once(seed=0) starts from
    model, history = pretrain(make, source, [Stage(1, 32)], Recipe(batch_size=32, lr=0.05), seed=0,
                              role="pretrain")
    assert history.role.tolist() == ["pretrain"] and 0 <= history.test_acc.iloc[0] <= 1
    weights = model.state_dict()
    assert not torch.equal(weights["stem.conv.weight"], initial["stem.conv.weight"])
    assert torch.equal(with_weights(make, weights)().stem.conv.weight, weights["stem.conv.weight"])

    tuned = []

    def build():
        tuned.append(with_weights(make, weights)())
        return tuned[-1]

    recipe = finetune_recipe(batch_size=32, steps=2, warmup_epochs=0.5)
    history = finetune_once(build, target, [Stage(1, 32, randaugment=5)], recipe, seed=1,
                            init="pretrained")
    assert len(history) == 1 and history.init.iloc[0] == "pretrained" and history.seed.iloc[0] == 1
    assert 0 <= history.test_acc.iloc[0] <= 1 and history.lr.iloc[0] == pytest.approx(recipe.lr)
    state = tuned[0].state_dict()
    assert not torch.equal(state["stem.conv.weight"], weights["stem.conv.weight"])  # fine-tuned
    assert tuned[0].classifier.weight.any()  # the new head learned from zero


def test_a_cached_pretraining_returns_its_trained_weights(imagenette_and_cifar, tmp_path, one_thread):
    source, _ = imagenette_and_cifar
    make = partial(ev2lite.create_model, "efficientnetv2_imagenette", num_classes=10)
    args = (make, source, [Stage(1, 32)], Recipe(batch_size=32, lr=0.05), 0)
    first, history = pretrain(*args, cache=tmp_path)
    again, cached = pretrain(*args, cache=tmp_path)  # read back, weights included
    assert weights_id(again.state_dict()) == weights_id(first.state_dict())
    assert weights_id(make().state_dict()) != weights_id(first.state_dict())
    assert list(cached.test_acc) == pytest.approx(list(history.test_acc))


def test_weights_id_follows_names_and_values():
    weights = {"a": torch.zeros(3), "b": torch.ones(2, dtype=torch.bfloat16), "n": torch.tensor(4)}
    assert weights_id(weights) == weights_id({k: v.clone() for k, v in weights.items()})
    assert weights_id({**weights, "a": torch.tensor([0.0, 0.0, 1e-7])}) != weights_id(weights)
    assert weights_id({"c" if k == "a" else k: v for k, v in weights.items()}) != weights_id(weights)


def test_finetune_from_a_torchvision_weights_file(imagenette_and_cifar, tmp_path, one_thread):
    torch.manual_seed(0)
    reference = tiny_torchvision_efficientnet(num_classes=1000).eval()
    path = tmp_path / "tiny_efficientnet.pth"
    torch.save(reference.state_dict(), path)

    build = with_weights(partial(ev2lite.create_model, "efficientnet_imagenette"), path)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(build().eval()(x), reference(x), rtol=1e-4, atol=1e-5)

    _, target = imagenette_and_cifar
    history = finetune_once(build, target, [Stage(1, 32)], finetune_recipe(32, steps=2), seed=0)
    assert 0 <= history.test_acc.iloc[0] <= 1

    with pytest.raises(ValueError, match="incompatible weights"):
        with_weights(partial(ev2lite.create_model, "efficientnetv2_imagenette"), path)()
    with pytest.raises(FileNotFoundError, match="not found"):
        with_weights(tiny_resnet, tmp_path / "missing.pth")()
    with pytest.raises(TypeError, match="state_dict, a file path or None"):
        with_weights(tiny_resnet, 3)
