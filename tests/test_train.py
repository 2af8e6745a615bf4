"""The training loop on real CIFAR-10: the loss falls, the schedule is right, resume is exact."""

import pytest
import torch

import ev2lite
from ev2lite.recipe import Recipe, Stage, lr_factor
from ev2lite.train import CheckpointError, fit

HISTORY_COLUMNS = ["epoch", "stage", "image_size", "lr", "train_loss", "train_acc", "test_loss", "test_acc"]


@pytest.fixture(scope="module")
def cifar(real_split):
    train = real_split("cifar10", "train").subset(640, seed=0)
    test = real_split("cifar10", "test").subset(200, seed=0)
    return train, test


def small_model(seed=0):
    torch.manual_seed(seed)
    return ev2lite.create_model("efficientnetv2_cifar", num_classes=10)


RECIPE = Recipe(batch_size=64, lr=0.05, warmup_epochs=0.5, seed=3)
STAGES = [Stage(epochs=2, image_size=24), Stage(epochs=2, image_size=32, dropout=0.2)]


def test_short_real_training_lowers_the_loss(cifar):
    history = fit(small_model(), *cifar, STAGES, RECIPE, progress=False)
    assert list(history.columns[:8]) == HISTORY_COLUMNS
    assert history.image_size.tolist() == [24, 24, 32, 32]
    assert history.train_loss.iloc[-1] < history.train_loss.iloc[0] - 0.05
    assert (history.images_per_s > 0).all() and history.train_time_s.is_monotonic_increasing


def test_resume_after_interruption_matches_an_unbroken_run(cifar, tmp_path, killed_in_epoch):
    unbroken_model = small_model()
    unbroken = fit(unbroken_model, *cifar, STAGES, RECIPE, progress=False, checkpoint=tmp_path / "a.pt")

    # killed during epoch 3, after the stage boundary
    killed_in_epoch(3, fit, small_model(), *cifar, STAGES, RECIPE, progress=False, checkpoint=tmp_path / "b.pt")
    assert torch.load(tmp_path / "b.pt", weights_only=True)["epoch"] == 2

    resumed_model = small_model(seed=1)  # different init: everything must come from the checkpoint
    resumed = fit(resumed_model, *cifar, STAGES, RECIPE, progress=False, checkpoint=tmp_path / "b.pt")
    assert resumed[HISTORY_COLUMNS].equals(unbroken[HISTORY_COLUMNS])
    for (name, a), b in zip(unbroken_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), name


def test_checkpoint_of_another_run_or_corrupt_is_refused(cifar, tmp_path):
    path = tmp_path / "run.pt"
    fit(small_model(), *cifar, STAGES[:1], RECIPE, progress=False, checkpoint=path)
    with pytest.raises(CheckpointError, match="different run"):
        fit(small_model(), *cifar, STAGES, RECIPE, progress=False, checkpoint=path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="unreadable or truncated"):
        fit(small_model(), *cifar, STAGES[:1], RECIPE, progress=False, checkpoint=path)


def test_lr_schedule_warmup_then_cosine_or_exponential():
    cosine = Recipe(lr_schedule="cosine", warmup_epochs=1)
    assert lr_factor(0, 10, 100, cosine) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, cosine) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100, cosine) == pytest.approx(0.5)
    exponential = Recipe(lr_schedule="exponential", warmup_epochs=0, lr_decay=0.97, lr_decay_epochs=2.4)
    assert lr_factor(24, 10, 100, exponential) == pytest.approx(0.97)


def test_paper_recipe_scales_lr_with_batch():
    assert Recipe.paper(batch_size=4096).lr == pytest.approx(0.256)
    assert Recipe.paper(batch_size=256).lr == pytest.approx(0.016)


def test_impossible_stage_values_are_refused():
    with pytest.raises(ValueError, match="epochs >= 1"):
        Stage(epochs=0, image_size=32)
    with pytest.raises(ValueError, match="dropout"):
        Stage(epochs=1, image_size=32, dropout=1.5)


def test_stage_boundaries_change_the_live_model_and_data(cifar, monkeypatch):
    import ev2lite.train as train_module

    model, seen, magnitudes, sizes = small_model(), [], [], set()
    real_evaluate, real_rand_augment = train_module.evaluate, train_module.rand_augment

    def spy_evaluate(net, loader, precision="fp32", flip=False):  # once at every epoch end
        seen.append((net.dropout.p, net.stages[-1][-1].drop_path.p))
        return real_evaluate(net, loader, precision, flip)

    monkeypatch.setattr(train_module, "evaluate", spy_evaluate)
    monkeypatch.setattr(train_module, "rand_augment", lambda m: magnitudes.append(m) or real_rand_augment(m))
    model.register_forward_pre_hook(lambda m, args: sizes.add((m.training, args[0].shape[-1])))
    crops, real_batch = set(), train_module.Loader._batch
    monkeypatch.setattr(train_module.Loader, "_batch", lambda self, *a: crops.add(
        (self.train, self.image_size, self.random_crop)) or real_batch(self, *a))
    stages = [Stage(1, 24, randaugment=0, dropout=0.1, stochastic_depth=0.0),
              Stage(1, 32, randaugment=9, dropout=0.3, stochastic_depth=0.2, random_crop=False)]
    fit(model, cifar[0].subset(128), cifar[1], stages, RECIPE, progress=False)
    n = sum(len(s) for s in model.stages)
    assert seen == [(0.1, 0.0), (0.3, pytest.approx(0.2 * (n - 1) / n))]
    assert magnitudes == [0, 9]
    assert {size for training, size in sizes if training} == {24, 32}
    assert {c for c in crops if c[0]} == {(True, 24, True), (True, 32, False)}


def test_flip_evaluation_averages_each_image_with_its_mirror(cifar):
    from ev2lite.data import Loader
    from ev2lite.train import evaluate

    torch.manual_seed(0)  # any model works; a linear one is not mirror-symmetric
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    test = cifar[1].subset(64)
    loader = Loader(test, batch_size=64, train=False)
    x, y = next(iter(loader))
    with torch.no_grad():
        logits = (model(x) + model(x.flip(3))) / 2
        loss, acc = evaluate(model, loader, flip=True)
    assert acc == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    assert evaluate(model, loader)[0] != pytest.approx(loss)  # the mirror changes the logits
