"""The compiled path of fit(): the same training as eager to a tolerance, compile seconds kept
apart from training seconds, a resumed compiled run continuing as an unbroken one, and
``compile="auto"`` falling back to eager, with a warning, on a run too short to pay.

The model is a tiny CNN (compiling it takes seconds, an EfficientNet minutes): what is under
test is fit's compiled path, not inductor.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

import ev2lite.train as train_module
from ev2lite.data import NORMALIZATION, ImageDataset
from ev2lite.recipe import Recipe, Stage
from ev2lite.train import fit, wants_compile

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

PIXELS = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def data(n, seed):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=generator)
    labels = (images.float().mean((1, 2, 3)) > 127.5).long()  # learnable: bright or dark
    return ImageDataset(images, labels, ["dark", "bright"], "synthetic", "train")


def tiny_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))


@pytest.fixture(autouse=True)
def synthetic_normalization(monkeypatch, tmp_path):
    monkeypatch.setitem(NORMALIZATION, "synthetic", PIXELS)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))


STAGES = [Stage(epochs=2, image_size=8)]
RECIPE = Recipe(batch_size=16, lr=0.05, warmup_epochs=0, eval_batch_size=32, channels_last=False)


def test_compiled_training_matches_eager_and_times_compilation_apart():
    train, test = data(64, 0), data(32, 1)
    eager = fit(tiny_cnn(), train, test, STAGES, RECIPE, progress=False)
    compiled = fit(tiny_cnn(), train, test, STAGES, replace(RECIPE, compile="on"),
                   progress=False)
    for column in ("train_loss", "test_loss", "test_acc"):
        np.testing.assert_allclose(compiled[column], eager[column], rtol=1e-4, atol=1e-5)
    assert (eager.compile_s == 0).all()
    assert compiled.compile_s.iloc[0] > 0 and compiled.compile_s.iloc[1] == 0  # one size, once
    assert (compiled.train_time_s > 0).all()


def test_a_resumed_compiled_run_continues_as_an_unbroken_one(tmp_path, killed_in_epoch):
    train, test = data(64, 0), data(32, 1)
    recipe = replace(RECIPE, compile="on")
    unbroken = fit(tiny_cnn(), train, test, STAGES, recipe, progress=False)
    path = tmp_path / "run.pt"
    killed_in_epoch(2, fit, tiny_cnn(), train, test, STAGES, recipe, progress=False, checkpoint=path)
    resumed = fit(tiny_cnn(), train, test, STAGES, recipe, progress=False, checkpoint=path)
    np.testing.assert_allclose(resumed.train_loss, unbroken.train_loss, rtol=1e-5, atol=1e-6)
    assert resumed.compile_s.iloc[1] > 0  # the resumed process compiled its graph anew


def test_auto_compiles_only_runs_long_enough_and_says_so():
    with pytest.warns(UserWarning, match="too few for torch.compile"):
        assert not wants_compile(Recipe(compile="auto"), 100)
    assert wants_compile(Recipe(compile="auto"), train_module.MIN_COMPILE_STEPS)
    assert wants_compile(Recipe(compile="on"), 1) and not wants_compile(Recipe(), 10**6)
    with pytest.raises(ValueError, match="compile must be one of off, auto, on"):
        Recipe(compile="yes")


def test_the_timed_step_can_be_the_compiled_one():
    from ev2lite.measure import InferenceStep, TrainStep

    model, steps = tiny_cnn(), []
    for compile in (False, True):
        torch.manual_seed(1)  # the same synthetic batch
        steps.append(TrainStep(model, 8, 4, compile=compile))
        steps[-1]()
    eager, compiled = steps
    assert compiled.forward is not compiled.model and eager.forward is eager.model
    for a, b in zip(eager.model.parameters(), compiled.model.parameters()):  # one same SGD step
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    logits = InferenceStep(model, 8, 4, compile=True)()
    assert logits.shape == (4, 2)


def test_the_gpu_defaults_and_their_training_path_on_a_cpu(monkeypatch):
    """The gpu profile trains with the device's defaults (bf16 autocast, channels_last, compile
    for long runs); on a CPU we check that a CUDA machine would get them, and that fit runs that
    very path (bf16 + channels_last + compiled) here."""
    import ev2lite.machine as machine

    with monkeypatch.context() as fake_cuda:
        fake_cuda.setattr(torch.cuda, "is_available", lambda: True)
        fake_cuda.setattr(machine, "native_bf16", lambda device=None: True)
        gpu = Recipe()
    assert (gpu.precision, gpu.channels_last, gpu.compile) == ("bf16", True, "auto")
    assert Recipe().precision == "fp32"  # back on the CPU
    train, test = data(64, 0), data(32, 1)
    history = fit(tiny_cnn(), train, test, STAGES, replace(RECIPE, precision="bf16", channels_last=True,
                                                          compile="on"), progress=False)
    assert np.isfinite(history.train_loss).all() and history.compile_s.iloc[0] > 0
