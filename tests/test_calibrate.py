"""Per-machine calibration (issue 13): what is measured, where it is kept, and how the defaults
of Recipe follow it on both CPU kinds this project runs on (Intel with AVX-512/AMX, AMD
without AVX-512). No timing is asserted: only which setting the measured numbers select."""

import json

import pandas as pd
import pytest
import torch
from torch import nn

from ev2lite import machine, measure
from ev2lite.cache import calibration_file
from ev2lite.calibrate import calibrate, main, save_calibration
from ev2lite.recipe import Recipe

INTEL = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
AMD = frozenset({"avx2"})


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "calibration_file", calibration_file)  # conftest hides it
    monkeypatch.setenv("EV2LITE_CACHE", str(tmp_path))
    monkeypatch.delenv("EV2LITE_CHANNELS_LAST", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return tmp_path


def tiny():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 10))


def test_calibrate_times_every_layout_batch_and_thread_count_and_restores_threads(one_thread):
    best, table = calibrate(tiny(), 8, batch_sizes=(4, 8), thread_counts=(1,), warmup=0, repeats=1)
    assert torch.get_num_threads() == 1
    assert len(table) == 4 and set(table.channels_last) == {False, True} and set(table.batch_size) == {4, 8}
    fastest = table.loc[table.images_per_s.idxmax()]
    assert (best["channels_last"], best["batch_size"], best["threads"]) == (
        fastest.channels_last, fastest.batch_size, fastest.threads)
    assert {"cpu_model", "torch", "load"} <= set(best) and "compile_speedup" not in best
    assert best["load"]["expected_threads"] == 1  # the mean threads the timed settings used
    with pytest.raises(ValueError, match="at least one batch size"):
        calibrate(tiny(), 8, batch_sizes=())


def test_compile_speedup_is_the_ratio_of_the_pair_timed_side_by_side(one_thread, monkeypatch):
    monkeypatch.setattr(measure, "_compiled", lambda model: model)  # no compilation: only the plumbing
    best, table = calibrate(tiny(), 8, batch_sizes=(4, 8), thread_counts=(1,), compile=True,
                            warmup=0, repeats=2)
    assert (table["pass"] == "grid").sum() == 4
    pair = table[table["pass"] == "compile pair"].set_index("compiled")
    assert sorted(pair.index) == [False, True] and pair.batch_size.nunique() == 1
    assert best["compile_speedup"] == pytest.approx(pair.images_per_s[True] / pair.images_per_s[False])


def measured(channels_last, compile_speedup=None, busy=False):
    best = {"channels_last": channels_last, "batch_size": 128, "threads": 2,
            "cpu_model": machine.cpu_model(), "cpu_id": machine.cpu_id(), "load": {"busy": busy, "load_1min": 0.1, "cpu_per_wall": 2.0}}
    if compile_speedup is not None:
        best["compile_speedup"] = compile_speedup
    return best, pd.DataFrame([{"channels_last": channels_last, "images_per_s": 1.0}])


@pytest.mark.parametrize("flags", [INTEL, AMD])
def test_without_a_calibration_the_layout_is_channels_last_on_both_cpu_kinds(cache, monkeypatch, flags):
    monkeypatch.setattr(machine, "cpu_flags", lambda: flags)
    assert machine.calibration() is None
    assert machine.default_channels_last() is True and Recipe().channels_last is True
    assert Recipe().compile == "off"


@pytest.mark.parametrize("flags", [INTEL, AMD])
def test_a_calibration_of_this_machine_beats_the_rule_and_the_environment_beats_both(cache, monkeypatch, flags):
    monkeypatch.setattr(machine, "cpu_flags", lambda: flags)
    rule = True  # channels_last without a calibration
    path = save_calibration(*measured(channels_last=not rule, compile_speedup=1.3))
    assert path == calibration_file(machine.cpu_id()) and path.parent.parent == cache
    assert json.loads(path.read_text())["settings"][0]["images_per_s"] == 1.0
    assert Recipe().channels_last is (not rule) and Recipe().compile == "auto"
    monkeypatch.setenv("EV2LITE_CHANNELS_LAST", "1" if rule else "0")
    assert Recipe().channels_last is rule
    assert Recipe(channels_last=not rule, compile="off").compile == "off"  # explicit wins


def test_a_calibration_of_another_cpu_is_not_used(cache, monkeypatch):
    save_calibration(*measured(channels_last=False, compile_speedup=2.0))
    monkeypatch.setattr(machine, "cpu_id", lambda: "Some Other CPU @ 9 GHz")
    monkeypatch.setattr(machine, "cpu_flags", lambda: INTEL)
    assert machine.calibration() is None and Recipe().channels_last is True
    assert calibration_file("Some Other CPU @ 9 GHz").name.startswith("some-other-cpu-9-ghz-torch")


def test_two_cpus_of_one_name_but_another_family_keep_their_own_calibrations(cache, monkeypatch):
    zen3 = ["model name\t: AMD EPYC", "cpu family\t: 25", "model\t\t: 1", "flags\t\t: avx2"]
    zen5 = ["model name\t: AMD EPYC", "cpu family\t: 26", "model\t\t: 2", "flags\t\t: avx2 avx512f"]
    for fn in (machine.cpu_id, machine.cpu_model, machine.cpu_flags):
        fn.cache_clear()
    try:
        monkeypatch.setattr(machine, "_cpuinfo", lambda: zen3)
        assert machine.cpu_id() == "AMD EPYC, family 25 model 1"
        save_calibration(*measured(channels_last=False, compile_speedup=2.0))
        assert machine.calibration()["cpu_id"] == "AMD EPYC, family 25 model 1"
        for fn in (machine.cpu_id, machine.cpu_model, machine.cpu_flags):
            fn.cache_clear()
        monkeypatch.setattr(machine, "_cpuinfo", lambda: zen5)
        assert machine.cpu_model() == "AMD EPYC" and machine.calibration() is None
        assert Recipe().channels_last is True and Recipe().compile == "off"
    finally:
        for fn in (machine.cpu_id, machine.cpu_model, machine.cpu_flags):
            fn.cache_clear()


def test_compile_becomes_the_default_only_where_it_paid(cache):
    save_calibration(*measured(channels_last=True, compile_speedup=1.05))
    assert Recipe().compile == "off"


def test_a_busy_calibration_is_refused_and_not_written(cache, capsys):
    with pytest.raises(RuntimeError, match="busy"):
        save_calibration(*measured(channels_last=True, busy=True))
    assert not calibration_file(machine.cpu_id()).exists()


def test_command_line_help():
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
