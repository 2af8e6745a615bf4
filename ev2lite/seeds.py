"""Independent random streams, one per purpose, derived from one run seed.

Every random draw of a run (training-subset choice, weight initialisation, data order,
crops and flips, RandAugment, mixup, dropout) takes its seed from :func:`stream_seed`, keyed by
the run's seed and by *what* is drawn and *when*: ``stream_seed(seed, "order", epoch)``. The key
is hashed by ``numpy.random.SeedSequence``, so neighbouring seeds and epochs give unrelated
streams. (A sum such as ``seed + epoch`` would not: seed s at epoch e + 1 would then shuffle
exactly like seed s + 1 at epoch e, and "independent" seeds would share most of their epochs.)
"""

from __future__ import annotations

import zlib

import numpy as np
import torch


def stream_seed(seed: int, purpose: str, *key: int) -> int:
    """A 63-bit seed for the stream ``purpose`` of run ``seed`` at ``key`` (e.g. epoch, rank).

    ``seed`` and each of ``key`` must be non-negative integers; ``purpose`` names the stream
    (``"order"``, ``"augment"``, ``"dropout"``, ``"init"``, ``"subset"``, ...). The same
    arguments always give the same value; any change in them gives an unrelated one. Raises
    ``ValueError`` for a negative or non-integer seed or key.
    """
    parts = (seed, *key)
    if any(not isinstance(p, (int, np.integer)) or p < 0 for p in parts):
        raise ValueError(f"seeds and keys must be non-negative integers, got seed={seed!r}, key={key!r}")
    # the length keeps (7,) and (7, 0) apart: SeedSequence ignores trailing zeros of its entropy
    entropy = [zlib.crc32(purpose.encode()), len(parts), *map(int, parts)]
    low, high = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    return (int(high) << 31) ^ int(low)  # < 2**63, as torch.manual_seed needs


def seed_init(seed: int) -> None:
    """Seed torch's global generator from the ``"init"`` stream of run ``seed``, just before a
    model is built, so that its initial weights depend on the seed alone (the study helpers and
    the command line build models this way). Raises ``ValueError`` as :func:`stream_seed`."""
    torch.manual_seed(stream_seed(seed, "init"))
