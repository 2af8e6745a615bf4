"""Study helpers: seed statistics, paired differences, the run cache, regime checks."""

import math
import os
import subprocess
import sys

import pandas as pd
import pytest

from ev2lite.stats import seeds_to_decide
from ev2lite.study import mean_std, paired_difference


def history(training, seed, accs, seconds_per_epoch):
    return pd.DataFrame({"epoch": range(1, len(accs) + 1), "test_acc": accs,
                         "train_time_s": [seconds_per_epoch * (i + 1) for i in range(len(accs))],
                         "model": "net", "training": training, "seed": seed})


RUNS = pd.concat([history("baseline", 0, [0.3, 0.5, 0.6], 10.0),
                  history("progressive", 0, [0.2, 0.45, 0.58], 5.0),
                  history("baseline", 1, [0.3, 0.4, 0.5], 10.0),
                  history("progressive", 1, [0.2, 0.5, 0.55], 5.0)])


def test_mean_std_takes_the_final_epoch_of_each_seed():
    table = mean_std(RUNS, ["training"])
    assert table.set_index("training")["mean"].to_dict() == pytest.approx(
        {"baseline": 0.55, "progressive": 0.565})
    assert table["count"].tolist() == [2, 2]


def test_paired_difference_pairs_runs_of_the_same_seed():
    table = paired_difference(RUNS, "model", "training", "progressive", "baseline")
    # seed 0: 0.58 - 0.6 = -0.02; seed 1: 0.55 - 0.5 = +0.05
    assert table.loc["net", "mean"] == pytest.approx(0.015)
    assert table.loc["net", "std"] == pytest.approx(0.0494975, rel=1e-5)
    assert table.loc["net", "count"] == 2
    half = 12.706 * 0.0494975 / 2 ** 0.5  # t(0.975, 1 df) x std / sqrt(2)
    assert table.loc["net", "low"] == pytest.approx(0.015 - half, rel=1e-3)
    assert table.loc["net", "high"] == pytest.approx(0.015 + half, rel=1e-3)
    one = paired_difference(RUNS[RUNS.seed == 0], "model", "training", "progressive", "baseline")
    assert one.loc["net", "mean"] == pytest.approx(-0.02) and math.isnan(one.loc["net", "low"])


def test_seeds_to_decide_follows_the_t_table():
    # mean 1, std 1: n = 6 gives t(0.975, 5) / sqrt(6) = 2.571 / 2.449 = 1.05 (not clear of 0),
    # n = 7 gives 2.447 / 2.646 = 0.925 (clear); values of the printed t-table
    assert seeds_to_decide(1.0, 1.0) == 7 and seeds_to_decide(-1.0, 1.0) == 7
    assert seeds_to_decide(0.0, 1.0) == math.inf and math.isnan(seeds_to_decide(float("nan"), 1.0))
    table = paired_difference(RUNS, "model", "training", "progressive", "baseline")
    assert table.loc["net", "seeds_to_decide"] == seeds_to_decide(0.015, table.loc["net", "std"])


# --- the run cache, eval_every, regime checks (issue 14's rules 1 and 5) -----------------------

from dataclasses import replace

import torch
from torch import nn

import ev2lite.study as study
from ev2lite.data import ImageDataset
from ev2lite.recipe import Recipe, Stage
from ev2lite.study import (RegimeError, draw, enforce, regime_check, run_jobs, run_key, tensor_bytes,
                           train_once)
from ev2lite.train import fit


def tiny_split(n, split, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g)
    return ImageDataset(images, torch.arange(n) % 4, list("abcd"), "cifar10", split)


def tiny_model():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 4))


TINY = (tiny_split(64, "train"), tiny_split(32, "test", seed=1))
TINY_RECIPE = Recipe(batch_size=16, lr=0.05, warmup_epochs=0, eval_batch_size=32, channels_last=False)
TINY_STAGES = [Stage(epochs=3, image_size=16)]


def test_a_cached_run_is_read_back_not_trained_again(tmp_path, monkeypatch, one_thread):
    first = train_once(tiny_model, TINY, TINY_STAGES, TINY_RECIPE, 0, cache=tmp_path, arm="a")
    assert len(list(tmp_path.glob("*.csv"))) == 1 and not list(tmp_path.glob("*.pt"))

    def no_training(*args, **kwargs):
        raise AssertionError("fit was called for a cached run")

    monkeypatch.setattr(study, "fit", no_training)
    again = train_once(tiny_model, TINY, TINY_STAGES, TINY_RECIPE, 0, cache=tmp_path, arm="a")
    pd.testing.assert_frame_equal(first, again, check_dtype=False)
    with pytest.raises(AssertionError, match="cached run"):  # another seed is another run
        train_once(tiny_model, TINY, TINY_STAGES, TINY_RECIPE, 1, cache=tmp_path, arm="a")


def test_kept_weights_come_back_with_a_cached_run(tmp_path, monkeypatch, one_thread):
    built = []

    def build():
        built.append(tiny_model())
        return built[-1]

    train_once(build, TINY, TINY_STAGES, TINY_RECIPE, 0, cache=tmp_path, keep_weights=True)
    trained = {k: v.clone() for k, v in built[-1].state_dict().items()}
    assert len(list(tmp_path.glob("*.weights.pt"))) == 1
    monkeypatch.setattr(study, "fit", lambda *a, **k: pytest.fail("fit ran for a cached run"))
    train_once(build, TINY, TINY_STAGES, TINY_RECIPE, 0, cache=tmp_path, keep_weights=True)
    fresh, again = tiny_model().state_dict(), built[-1].state_dict()
    assert all(torch.equal(again[k], trained[k]) for k in trained)
    assert not all(torch.equal(fresh[k], trained[k]) for k in trained)  # not the initialisation
    next(tmp_path.glob("*.weights.pt")).unlink()  # history without weights: trained again
    with pytest.raises(pytest.fail.Exception, match="fit ran"):
        train_once(build, TINY, TINY_STAGES, TINY_RECIPE, 0, cache=tmp_path, keep_weights=True)


def test_a_run_locked_by_a_live_process_is_waited_for_not_trained_twice(tmp_path, monkeypatch, one_thread):
    trained = train_once(tiny_model, TINY, TINY_STAGES, TINY_RECIPE, 0, cache=tmp_path / "a")
    key = run_key(tiny_model(), TINY, TINY_STAGES, replace(TINY_RECIPE, seed=0), {})
    other = tmp_path / "b"
    other.mkdir()
    (other / f"{key}.lock").write_text(str(os.getpid()))  # "another process" is training it
    slept = []

    def the_other_finishes(seconds):  # while we wait, the other process saves its history
        slept.append(seconds)
        trained.drop(columns="seed").to_csv(other / f"{key}.csv", index=False)

    monkeypatch.setattr(study.time, "sleep", the_other_finishes)
    monkeypatch.setattr(study, "fit", lambda *a, **k: pytest.fail("fit ran for a locked run"))
    again = train_once(tiny_model, TINY, TINY_STAGES, TINY_RECIPE, 0, cache=other)
    assert slept and list(again.test_acc) == list(trained.test_acc)


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, one_thread):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    key = run_key(tiny_model(), TINY, TINY_STAGES, replace(TINY_RECIPE, seed=0), {})
    tmp_path.joinpath(f"{key}.lock").write_text(str(dead.pid))
    history = train_once(tiny_model, TINY, TINY_STAGES, TINY_RECIPE, 0, cache=tmp_path)
    assert len(history) == 3 and not list(tmp_path.glob("*.lock"))  # trained, lock released


def test_run_key_changes_with_seed_data_stages_and_labels():
    base = run_key(tiny_model(), TINY, TINY_STAGES, TINY_RECIPE, {"arm": "a"})
    assert base == run_key(tiny_model(), TINY, TINY_STAGES, TINY_RECIPE, {"arm": "a"})
    others = [run_key(tiny_model(), TINY, TINY_STAGES, replace(TINY_RECIPE, seed=1), {"arm": "a"}),
              run_key(tiny_model(), draw(*TINY, 48, None, seed=0), TINY_STAGES, TINY_RECIPE, {"arm": "a"}),
              run_key(tiny_model(), TINY, [Stage(epochs=2, image_size=16)], TINY_RECIPE, {"arm": "a"}),
              run_key(tiny_model(), TINY, TINY_STAGES, TINY_RECIPE, {"arm": "b"})]
    assert len({base, *others}) == 5


def test_tensor_bytes_are_numpys_row_major_bytes_for_any_layout_and_dtype():
    grid = torch.arange(12, dtype=torch.int64).reshape(3, 4)
    assert tensor_bytes(grid.t()) == grid.t().numpy().tobytes()  # a transposed view: row-major copy
    half = torch.tensor([1.0, -2.0, 0.5]).to(torch.bfloat16)  # numpy has no bf16: read its int16 bits
    assert tensor_bytes(half) == half.view(torch.int16).numpy().tobytes() and len(tensor_bytes(half)) == 6
    assert tensor_bytes(torch.tensor(7, dtype=torch.uint8)) == bytes([7])  # a 0-d tensor


def test_an_interrupted_cached_run_resumes_from_its_last_epoch(tmp_path, killed_in_epoch, one_thread):
    unbroken = train_once(tiny_model, TINY, TINY_STAGES, TINY_RECIPE, 0, cache=tmp_path / "a")
    killed_in_epoch(2, train_once, tiny_model, TINY, TINY_STAGES, TINY_RECIPE, 0, cache=tmp_path / "b")
    assert len(list((tmp_path / "b").glob("*.pt"))) == 1  # epoch 1 checkpointed, no history yet
    resumed = train_once(tiny_model, TINY, TINY_STAGES, TINY_RECIPE, 0, cache=tmp_path / "b")
    columns = ["epoch", "train_loss", "test_acc"]
    pd.testing.assert_frame_equal(unbroken[columns], resumed[columns])


def test_each_seed_draws_its_own_training_subset():
    a, _ = draw(*TINY, 32, None, seed=0)
    b, _ = draw(*TINY, 32, None, seed=1)
    assert len(a) == len(b) == 32 and not torch.equal(a.images, b.images)
    assert draw(*TINY, None, None, seed=5)[0] is TINY[0]


def test_eval_every_tests_only_every_nth_and_the_last_epoch(one_thread):
    recipe = replace(TINY_RECIPE, eval_every=2)
    torch.manual_seed(0)
    history = fit(tiny_model(), *TINY, TINY_STAGES, recipe, progress=False)
    assert history.test_acc.isna().tolist() == [True, False, False]
    with pytest.raises(ValueError, match="eval_every >= 1"):
        Recipe(eval_every=0)


def test_regime_check_prints_records_and_refuses_a_missed_regime_only_at_full(capsys):
    assert regime_check("train-test gap", 21.0, 15, profile="full")
    assert "reached" in capsys.readouterr().out
    missed = regime_check("train-test gap", 4.0, 15, profile="quick")
    assert not missed and "NOT reached" in capsys.readouterr().out
    assert missed.record() == {"what": "train-test gap", "value": 4.0, "threshold": 15, "unit": "points",
                               "at_least": True, "reached": False}
    with pytest.raises(RegimeError, match="did not reach the regime"):
        regime_check("train-test gap", 4.0, 15, profile="full")
    enforce([missed], "quick")  # only printed below full
    with pytest.raises(RegimeError, match="gpu profile"):
        enforce([regime_check("ok", 20, 15), missed], "gpu")
    assert regime_check("seconds", 3.0, 5, profile="full", unit="s", at_least=False)


def test_run_jobs_runs_last_first_when_reversed_and_returns_the_given_order():
    called = []

    def job(i):
        def run():
            called.append(i)
            return pd.DataFrame({"job": [i, i]})
        return run

    forward = run_jobs([job(i) for i in range(3)])
    assert called == [0, 1, 2]
    backward = run_jobs([job(i) for i in range(3)], reverse=True)
    assert called[3:] == [2, 1, 0]
    pd.testing.assert_frame_equal(forward, backward)
    assert forward.job.tolist() == [0, 0, 1, 1, 2, 2] and forward.index.is_unique
    with pytest.raises(ValueError, match="at least one job"):
        run_jobs([])
