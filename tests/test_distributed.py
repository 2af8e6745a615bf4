"""Two CPU processes under torchrun (gloo, loopback): the command line trains one model with
DistributedDataParallel; both ranks end with the same weights and history, and only rank 0
writes files."""

import json
import os
import subprocess
import sys

import pytest
import torch

# Runs the command line in each process; "{rank}" in an argument becomes the process's rank, and
# every rank also saves the weights and history fit() returned to it.
SCRIPT = """
import os
import sys

import torch

import ev2lite.cli as cli
from ev2lite.train import fit

rank = os.environ["RANK"]


def fit_and_save(model, *args, **kwargs):
    history = fit(model, *args, **kwargs)
    torch.save({"model": model.state_dict(), "history": history.to_dict("list")},
               os.path.join(sys.argv[1], f"rank{rank}.pt"))
    return history


cli.fit = fit_and_save
sys.exit(cli.main([arg.replace("{rank}", rank) for arg in sys.argv[2:]]))
"""


@pytest.mark.usefixtures("cifar_archive")
def test_two_processes_train_identical_weights_and_only_rank_0_writes(tmp_path):
    script = tmp_path / "run_rank.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if sys.platform == "linux":
        env["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(script), str(tmp_path), "--train-subset", "256", "--test-subset", "100",
               "--epochs", "2", "--batch-size", "32", "--ema-decay", "0.9", "--no-progress",
               "--out", str(tmp_path / "out{rank}")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr

    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0["history"] == rank1["history"] and rank0["history"]["epoch"] == [1, 2]
    for name, weights in rank0["model"].items():
        assert torch.equal(weights, rank1["model"][name]), name  # BatchNorm statistics included
    assert sorted(p.name for p in (tmp_path / "out0").iterdir()) == [
        "checkpoint.pt", "history.csv", "metrics.json"]
    assert not (tmp_path / "out1").exists()
    metrics = json.loads((tmp_path / "out0" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["test_acc"] == rank0["history"]["test_acc"][-1]
