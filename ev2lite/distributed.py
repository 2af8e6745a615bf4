"""Multi-process training with ``torchrun``: the few process-group helpers ``fit()`` needs.

``torchrun`` starts one process per device and describes the job in environment variables
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). :func:`init_from_env`
joins that process group (gloo on CPU, NCCL on GPU). Without a process group every helper
here returns its input unchanged or does nothing, so single-process runs stay bit for bit
what they were.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def init_from_env() -> tuple[int, int, torch.device]:
    """Join the process group described by torchrun's environment, if there is one.

    With ``WORLD_SIZE > 1`` initialises ``torch.distributed`` (backend ``nccl`` when CUDA is
    available, each process on GPU ``LOCAL_RANK``; ``gloo`` on CPU); calling it again is
    harmless. Returns ``(rank, world_size, device)``: ``(0, 1, cuda or cpu)`` for a single
    process. Raises ``RuntimeError`` (from torch) if the rendezvous fails.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world_size == 1:
        return 0, 1, torch.device("cuda" if cuda else "cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), world_size, torch.device(f"cuda:{local_rank}" if cuda else "cpu")


def shutdown() -> None:
    """Leave the process group (if one was initialised); call once at the end of a run."""
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group; ``(0, 1)`` without one."""
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device() -> torch.device:
    """Where collectives' tensors must live: the current GPU for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce(values: list[float], op: str = "sum") -> list[float]:
    """Each number's ``"sum"`` or ``"max"`` over all ranks (float64, identical on every rank).

    Returns ``values`` itself (same objects) without a process group.
    """
    if not dist.is_initialized():
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return tensor.tolist()


def average_buffers(*modules: nn.Module) -> None:
    """Replace every floating-point buffer (BatchNorm running mean and variance) by its mean
    over the ranks, in place, so that all ranks evaluate and save the same model.

    Gradients are averaged by DDP, so parameters already agree; running statistics are updated
    from each rank's own batches and do not. No-op without a process group.
    """
    if not dist.is_initialized():
        return
    world_size = dist.get_world_size()
    for module in modules:
        for buffer in module.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
                buffer.div_(world_size)


def broadcast_object(obj):
    """Rank 0's ``obj`` (any picklable object, e.g. a checkpoint dict) on every rank.

    Every rank must call it; returns ``obj`` itself without a process group.
    """
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_device())
    return box[0]
