"""ev2lite.measure: exact counts, and timing/memory functions that return sane numbers.

Timings are never asserted (they depend on the machine and its load): only that they are
positive and consistent. Timed tests run on one thread, because on a shared 2-core machine two
OpenMP threads can stall for seconds per step while another process holds a core.
"""

import functools
import math

import pytest
import torch
import torchvision

from ev2lite import create_model
from ev2lite.measure import (count_params, inference_latency, multiply_adds, peak_train_memory,
                             summarize, time_interleaved, train_step_time, training_multiply_adds)


madds = functools.cache(multiply_adds)  # each count once per session




@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("efficientnetv2_cifar", num_classes=10)


def test_params_of_v2_s_match_the_published_count():
    assert count_params(create_model("efficientnetv2_s")) == 21_458_488


def test_multiply_adds_of_v2_s_at_384_px_match_torchvision():
    assert round(madds("efficientnetv2_s", 384) / 1e9, 3) == 8.366
    with torch.device("meta"):
        torchvision_v2_s = torchvision.models.efficientnet_v2_s()
    assert multiply_adds(torchvision_v2_s, 384) == madds("efficientnetv2_s", 384)


def test_multiply_adds_of_b0_at_224_px_match_torchvision():
    assert round(madds("efficientnet_b0", 224) / 1e9, 2) == 0.39  # torchvision publishes 0.39 GFLOPS
    with torch.device("meta"):
        assert madds("efficientnet_b0", 224) == multiply_adds(torchvision.models.efficientnet_b0(), 224)


def test_multiply_adds_are_per_image_and_leave_the_model_unchanged(tiny):
    tiny.train()
    weight = tiny.classifier.weight
    assert multiply_adds(tiny, 32, batch=3) == multiply_adds(tiny, 32)
    assert tiny.training and tiny.classifier.weight is weight and weight.device.type == "cpu"
    assert training_multiply_adds(tiny, 32) == 3 * multiply_adds(tiny, 32)


def test_multiply_adds_scale_about_quadratically_with_image_size():
    # all but the classifier scales with the pixel count
    ratio = madds("efficientnetv2_s", 384) / madds("efficientnetv2_s", 192)
    assert ratio == pytest.approx(4, rel=0.01)


def test_too_small_images_raise_the_models_error():
    with pytest.raises(ValueError, match="at least 32x32"):
        multiply_adds("efficientnetv2_s", 16)


def test_training_step_time_is_sane(tiny, one_thread):
    result = train_step_time(tiny, 32, 4, warmup=1, repeats=2)
    assert result["repeats"] == 2 and result["median_s"] > 0
    assert (result["min_s"] <= result["q25_s"] <= result["median_s"] <= result["q75_s"]
            <= result["max_s"])
    assert result["images_per_s"] == pytest.approx(4 / result["median_s"])


@pytest.mark.parametrize("channels_last", [True, False])
def test_bf16_and_nchw_paths_run(tiny, one_thread, channels_last):
    result = train_step_time(tiny, 32, 4, precision="bf16", channels_last=channels_last,
                             warmup=0, repeats=1)
    assert math.isfinite(result["images_per_s"]) and result["images_per_s"] > 0


def test_inference_latency_is_in_ms(tiny, one_thread):
    result = inference_latency(tiny, 32, 4, warmup=1, repeats=2)
    assert result["median_ms"] > 0
    assert result["images_per_s"] == pytest.approx(4000 / result["median_ms"])


def test_time_interleaved_alternates_steps():
    calls = []
    steps = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    seconds = time_interleaved(steps, warmup=1, repeats=3)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert {k: len(v) for k, v in seconds.items()} == {"a": 3, "b": 3}


def test_summary_quartiles_and_units():
    assert summarize([1.0, 2.0, 3.0], 8, unit="ms") == {
        "median_ms": 2000.0, "q25_ms": 1500.0, "q75_ms": 2500.0, "min_ms": 1000.0,
        "max_ms": 3000.0, "iqr_percent": 50.0, "images_per_s": 4.0, "repeats": 3}


def test_peak_memory_grows_with_batch_size(tiny, one_thread):
    small, large = peak_train_memory(tiny, 32, 4), peak_train_memory(tiny, 32, 16)
    assert large["activations_mib"] > 3 * small["activations_mib"] > 0
    assert large["total_mib"] > small["total_mib"]
    weights = count_params(tiny) * 4 / 2**20
    assert small["gradients_mib"] == pytest.approx(weights) == small["optimizer_mib"]


def test_rmsprop_keeps_two_buffers_per_parameter(tiny, one_thread):
    result = peak_train_memory(tiny, 32, 4, optimizer="rmsprop", precision="bf16")
    assert result["optimizer_mib"] >= 2 * result["gradients_mib"]


@pytest.mark.parametrize("bad", [{"precision": "fp16"}, {"optimizer": "adam"}])
def test_bad_settings_are_refused(tiny, bad):
    with pytest.raises(ValueError, match="unknown"):
        train_step_time(tiny, 32, 4, **bad)


def test_machine_load_records_cpu_and_wall_and_flags_a_starved_process(monkeypatch):
    import ev2lite.measure as measure

    with measure.machine_load() as record:
        sum(i * i for i in range(200_000))  # one busy thread
    assert record["wall_s"] > 0 and record["cpu_s"] > 0 and record["cores"] >= 1
    assert set(record) >= {"cpu_per_wall", "load_1min", "threads", "busy"}
    monkeypatch.setattr(measure.os, "getloadavg", lambda: (99.0, 99.0, 99.0))
    with measure.machine_load() as loaded:
        pass
    assert loaded["busy"]  # a load far above the cores
    monkeypatch.setattr(measure.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    with measure.machine_load() as sleeping:
        import time
        time.sleep(0.2)  # wall-clock without CPU: as a process preempted by others
    assert sleeping["busy"] and sleeping["cpu_per_wall"] < 0.5


def test_a_block_that_ran_partly_on_one_thread_is_judged_by_its_mean_threads():
    from ev2lite.measure import was_busy

    # 2 threads on 2 cores, 1.42 CPU s per wall s: starved for 2 threads, not for a mean of 1.5
    # (half the time on 1 thread, as calibration's interleaved 1- and 2-thread settings)
    record = {"wall_s": 10.0, "cpu_s": 14.2, "load_1min": 0.9, "cores": 2, "threads": 2}
    assert was_busy(record) and not was_busy(record, 1.5)


def test_native_bf16_follows_the_cpu_flags_and_the_layout_default_does_not(monkeypatch):
    import ev2lite.machine as machine
    from ev2lite.recipe import Recipe

    assert machine.cpu_model() and isinstance(machine.cpu_flags(), frozenset)
    monkeypatch.setattr(machine.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2"})  # e.g. AMD Zen 3
    assert not machine.native_bf16("cpu") and Recipe().channels_last  # the layout ignores flags
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2", "avx512f", "amx_bf16"})  # Sapphire Rapids
    assert machine.native_bf16("cpu") and Recipe().channels_last
    assert not Recipe(channels_last=False).channels_last
