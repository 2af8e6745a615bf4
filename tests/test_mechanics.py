"""The mechanics under every study: independent seeds, the released code's staircase schedule,
RandAugment on the paper's scale, torchvision's random-resized crop, and one optimizer factory
for the trained and the timed step."""

import pytest
import torch
from timm.optim import RMSpropTF

import ev2lite
from ev2lite import guard
from ev2lite.augment import rand_augment
from ev2lite.data import ImageDataset, Loader
from ev2lite.measure import TrainStep
from ev2lite.progressive import TABLE6
from ev2lite.recipe import Recipe, Stage, lr_factor, make_optimizer
from ev2lite.seeds import stream_seed

PIXELS = ((0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255))  # normalization that keeps pixel values


def labelled(n=60, size=8):
    """n images; image i is filled with the value i and labelled i."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, size, size)
    return ImageDataset(images.contiguous(), torch.arange(n), [str(i) for i in range(n)], "synthetic", "train")


def order(loader, epoch):
    loader.set_epoch(epoch)
    return tuple(torch.cat([y for _, y in loader]).tolist())


# --- independent seeds -----------------------------------------------------------------------
def test_two_seeds_share_no_epoch_order():
    # with `seed + epoch`, seed s at epoch e + 1 shuffled exactly as seed s + 1 at epoch e
    data = labelled()
    orders = {(seed, epoch): order(Loader(data, 10, train=True, seed=seed, mean_std=PIXELS), epoch)
              for seed in range(4) for epoch in range(1, 7)}
    assert len(set(orders.values())) == len(orders)


def test_each_seed_trains_on_its_own_subset():
    data = labelled(200)
    data.labels = torch.arange(200) % 4  # 4 classes; image i still shows the value i
    picks = [tuple(data.subset(50, seed=s).images[:, 0, 0, 0].tolist()) for s in range(3)]
    assert len(set(picks)) == 3 and picks[0] == tuple(data.subset(50, seed=0).images[:, 0, 0, 0].tolist())


def test_streams_differ_by_purpose_seed_and_key():
    seeds = {stream_seed(s, p, *k) for s in range(3) for p in ("order", "augment", "dropout")
             for k in [(), (0,), (1,), (1, 0), (0, 1)]}
    assert len(seeds) == 3 * 3 * 5 and all(0 <= s < 2**63 for s in seeds)
    assert stream_seed(2, "order", 5) == stream_seed(2, "order", 5)
    with pytest.raises(ValueError, match="non-negative integers"):
        stream_seed(-1, "order")
    with pytest.raises(ValueError, match="non-negative integers"):
        stream_seed(0, "order", 1.5)


# --- the exponential schedule, as released -----------------------------------------------------
def test_exponential_decay_is_a_staircase_from_step_zero():
    # google/automl efficientnetv2 utils.build_learning_rate: exponential_decay(staircase=True)
    # on the global step with decay_steps = 2.4 epochs; linear warmup over the first epochs
    recipe = Recipe(lr_schedule="exponential", warmup_epochs=0, lr_decay=0.97, lr_decay_epochs=2.4)
    steps_per_epoch = 10  # decay_steps = 24
    assert [lr_factor(s, steps_per_epoch, 1000, recipe) for s in (0, 13, 23)] == [1.0] * 3
    assert lr_factor(24, steps_per_epoch, 1000, recipe) == pytest.approx(0.97)
    assert lr_factor(30, steps_per_epoch, 1000, recipe) == pytest.approx(0.97)  # inside an interval
    assert lr_factor(48, steps_per_epoch, 1000, recipe) == pytest.approx(0.97 ** 2)
    smooth = Recipe(lr_schedule="exponential", warmup_epochs=0, lr_staircase=False)
    assert lr_factor(30, steps_per_epoch, 1000, smooth) == pytest.approx(0.97 ** (30 / 24))
    warm = Recipe(lr_schedule="exponential", warmup_epochs=5)
    assert lr_factor(24, steps_per_epoch, 1000, warm) == pytest.approx(0.5)  # warmup: (24+1)/50
    assert lr_factor(50, steps_per_epoch, 1000, warm) == pytest.approx(0.97 ** 2)  # floor(50/24)


# --- RandAugment on the paper's TF scale -------------------------------------------------------
def rotate_degrees(magnitude):
    """The rotation angle RandAugment(magnitude) uses (sign aside), read from the transform."""
    transform = rand_augment(magnitude).transform  # timm's
    rotate = next(op for op in transform.ops if op.name == "Rotate")
    upper = rotate.magnitude_max or 10
    return abs(rotate.level_fn(min(rotate.magnitude, upper), rotate.hparams)[0])


def test_table6_ranges_keep_their_meaning():
    # TF: angle = magnitude / 10 * 30 degrees, no cap at 10; the old x3 mapping made S, M and L
    # all 15-30 on torchvision's scale
    assert [rotate_degrees(m) for m in (5, 10, 15, 20, 25)] == pytest.approx([15, 30, 45, 60, 75])
    tops = [TABLE6[f"efficientnetv2_{s}"].regularization["randaugment"] for s in "sml"]
    assert tops == [(5, 15), (5, 20), (5, 25)]  # paper Table 6
    assert Stage(1, 300, randaugment=25).randaugment == 25


def test_rand_augment_is_reproducible_and_stronger_with_magnitude():
    grid = torch.arange(32, dtype=torch.uint8) * 8
    images = torch.stack([grid.view(1, 32).expand(32, 32), grid.view(32, 1).expand(32, 32),
                          (grid.view(1, 32) // 2 + grid.view(32, 1) // 2)]).expand(64, 3, 32, 32).contiguous()

    def change(magnitude):
        torch.manual_seed(0)
        out = rand_augment(magnitude)(images)
        assert out.shape == images.shape and out.dtype == torch.uint8
        return (out.float() - images.float()).abs().mean().item()

    torch.manual_seed(1)
    first = rand_augment(10)(images)
    torch.manual_seed(1)
    assert torch.equal(rand_augment(10)(images), first)
    assert change(2) < change(10) < change(25)
    assert rand_augment(0) is None
    with pytest.raises(ValueError, match="TF scale"):
        rand_augment(31)


# --- random-resized crop as torchvision's ------------------------------------------------------
def test_random_resized_crop_covers_torchvision_scale():
    # one image whose pixel value encodes its column: a crop's value range gives its width
    n = 96
    column = torch.linspace(0, 255, n).round().to(torch.uint8)
    data = ImageDataset(column.view(1, 1, 1, n).expand(400, 3, n, n).contiguous(), torch.zeros(400, dtype=torch.long),
                        ["a"], "synthetic", "train")
    loader = Loader(data, 400, train=True, image_size=16, mean_std=PIXELS)
    loader.set_epoch(1)
    x, _ = next(iter(loader))
    width = (x.amax((1, 2, 3)) - x.amin((1, 2, 3))) / 255 * n  # ~ crop width in px
    fraction = (width / n) ** 2 * 3 / 4  # area fraction at the narrowest aspect ratio (lower bound)
    assert fraction.min() < 0.2  # reachable only below torchvision's lower bound 0.08 ... 0.35
    with pytest.raises(ValueError, match="crop_scale"):
        Loader(data, 4, train=True, crop_scale=(0.5, 0.2))


# --- one optimizer for the trained and the timed step ------------------------------------------
def groups(optimizer):
    return [({id(p) for p in g["params"]}, g["weight_decay"], g["lr"]) for g in optimizer.param_groups]


@pytest.mark.parametrize("name", ["sgd", "rmsprop"])
def test_timed_step_uses_the_trained_optimizer(name):
    model = ev2lite.create_model("efficientnetv2_cifar", num_classes=10)
    recipe = Recipe(optimizer=name, lr=0.01, weight_decay=1e-4)
    step = TrainStep(model, 32, 2, optimizer=recipe)
    trained = make_optimizer(step.model, recipe)
    assert type(step.optimizer) is type(trained)
    assert groups(step.optimizer) == groups(trained)
    assert (type(trained) is RMSpropTF) == (name == "rmsprop")
    decay, no_decay = step.optimizer.param_groups
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim <= 1 for p in no_decay["params"]) and all(p.ndim > 1 for p in decay["params"])
    assert isinstance(TrainStep(model, 32, 2, optimizer=name).optimizer, type(trained))


def test_memory_guard_probes_the_recipe_optimizer(monkeypatch):
    seen = []
    real = guard.peak_train_memory
    monkeypatch.setattr(guard, "peak_train_memory", lambda *a, **k: seen.append(k["optimizer"]) or real(*a, **k))
    model = ev2lite.create_model("efficientnetv2_cifar", num_classes=10)
    recipe = Recipe(optimizer="rmsprop", batch_size=8)
    guard.train_memory_estimate(model, 32, recipe, torch.device("cpu"))
    assert seen == [recipe]


def test_seed_init_makes_the_initial_weights_a_function_of_the_seed_alone():
    from ev2lite.seeds import seed_init

    weights = []
    for seed in (3, 3, 4):
        torch.rand(5)  # whatever drew from the generator before
        seed_init(seed)
        weights.append(torch.nn.Linear(4, 4).weight.detach().clone())
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
