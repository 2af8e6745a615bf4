"""Fixtures shared by the test modules.

No test reaches the network: ``EV2LITE_OFFLINE=1`` (set here, inherited by subprocesses) makes
:mod:`ev2lite.data` refuse every download. Tests that need the real archives take them through
:func:`real_split`, which skips with the reason when an archive is absent.
"""

import os

import pytest
import torch

os.environ["EV2LITE_OFFLINE"] = "1"

from ev2lite.data import DatasetNotFoundError, data_root, load_dataset  # noqa: E402


@pytest.fixture(autouse=True)
def no_calibration(monkeypatch, tmp_path_factory):
    """Tests see no calibration of this machine (``python -m ev2lite.calibrate`` may have written
    one under the user's cache): Recipe's defaults are then the documented rules, the same on
    every machine. ``tests/test_calibrate.py`` puts the real file location back."""
    import ev2lite.machine

    missing = tmp_path_factory.getbasetemp() / "no-calibration.json"
    monkeypatch.setattr(ev2lite.machine, "calibration_file", lambda cpu: missing)


@pytest.fixture
def one_thread():
    """Run the test on one torch thread: as fast for tiny models, steadier on a shared 2-core
    machine (two OpenMP threads stall while another process holds a core), and bitwise
    comparable with subprocesses started with ``OMP_NUM_THREADS=1``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_real(name: str, split: str):
    """The real split ``name``/``split`` (cached after the first decode), or skip the test."""
    try:
        return load_dataset(name, split, progress=False)
    except DatasetNotFoundError:
        pytest.skip(f"the {name} archive is not in {data_root()}: set EV2LITE_DATA to the folder "
                    "holding it (../shared/datasets in this project)")


@pytest.fixture(scope="session")
def real_split():
    """``real_split(name, split)``: a real dataset split, or a skip naming what is missing."""
    return load_real


@pytest.fixture
def cifar_archive(real_split):
    """For tests that train through the command line or a subprocess: skip without CIFAR-10."""
    real_split("cifar10", "train")
    real_split("cifar10", "test")


@pytest.fixture
def killed_in_epoch(monkeypatch):
    """``killed_in_epoch(n, fn, *args, **kwargs)``: run ``fn`` (a :func:`ev2lite.train.fit`
    call) until epoch ``n``'s evaluation, where it stops with ``KeyboardInterrupt`` as a kill
    would (epochs before ``n`` are checkpointed); then ``fit`` is restored."""
    import ev2lite.train as train_module

    def run(epoch, fn, *args, **kwargs):
        real, calls = train_module.evaluate, []

        def dying(*a, **k):
            calls.append(1)
            if len(calls) == epoch:
                raise KeyboardInterrupt
            return real(*a, **k)

        monkeypatch.setattr(train_module, "evaluate", dying)
        with pytest.raises(KeyboardInterrupt):
            fn(*args, **kwargs)
        monkeypatch.setattr(train_module, "evaluate", real)

    return run
