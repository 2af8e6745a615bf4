"""Fixtures shared by the test modules."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run the test on one torch thread: as fast for tiny models, steadier on a shared 2-core
    machine (two OpenMP threads stall while another process holds a core), and bitwise
    comparable with subprocesses started with ``OMP_NUM_THREADS=1``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
