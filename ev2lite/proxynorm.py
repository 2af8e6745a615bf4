"""Proxy Norm: a batch-independent normalized activation (Labatie et al. 2021), as used by
Graphcore's G16-EfficientNet with LayerNorm ("LN+PN"; REFERENCE.md section 4, seed article 003).

A batch-independent norm (LayerNorm or GroupNorm, *without* affine) leaves every channel of a
sample normalized only on average over the group: after the channel's affine transform and the
activation, the channel is no longer centred or of unit variance ("channel-wise
denormalization"), and the error compounds with depth. Proxy Norm applies the same affine
transform and activation to a Gaussian *proxy* variable and uses the proxy's mean and variance
to correct the real activations, per channel ``c``::

    PN(x)_c = (act(g_c x + b_c) - E_Y[act(g_c Y + b_c)]) / sqrt(Var_Y[act(g_c Y + b_c)] + eps)
    Y ~ N(b'_c, (1 + g'_c)^2)

The expectation and variance over ``Y`` are computed on ``n`` fixed quantiles of the standard
normal, ``q_k = sqrt(2) erfinv(2 (k + 0.5) / n - 1)``, ``k = 0..n-1`` (n = 200, eps = 0.03, as
Graphcore's), shifted and scaled to ``Y_k = b'_c + (1 + g'_c) q_k``; the variance is the
population variance over the ``n`` samples. The statistics are ordinary differentiable
functions of ``g, b, g', b'``, so gradients flow through them. Proxy Norm wraps the activation,
so it is not used where no activation follows (MBConv's linear projection): there the block
keeps the plain norm with its affine transform (``ev2lite.blocks.ConvBNAct``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

PROXY_SAMPLES = 200
PROXY_EPS = 0.03


def proxy_quantiles(n: int = PROXY_SAMPLES, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ``n`` standard-normal quantiles ``sqrt(2) erfinv(2 (k + 0.5) / n - 1)``, shape ``[n]``.

    Symmetric about 0 (mean exactly 0 up to rounding); their variance tends to 1 as ``n`` grows
    (0.985 for n = 200). Raises ``ValueError`` for ``n < 2``.
    """
    if n < 2:
        raise ValueError(f"Proxy Norm needs at least 2 proxy samples, got {n}")
    k = torch.arange(n, dtype=torch.float64)
    return (math.sqrt(2) * torch.special.erfinv(2 * (k + 0.5) / n - 1)).to(dtype)


class ProxyNormAct(nn.Module):
    """Affine transform, activation and Proxy Norm of one normalized tensor, per channel.

    Input: the output of a batch-independent norm without affine, ``[B, C, H, W]``; output
    ``[B, C, H, W]``. Parameters (``[C]`` each, 4 per channel): ``weight`` ``g`` (init 1) and
    ``bias`` ``b`` (init 0) of the affine transform; ``proxy_weight`` ``g'`` and ``proxy_bias``
    ``b'`` (init 0: the proxy starts as a standard normal) of the proxy's scale ``1 + g'`` and
    mean. ``act`` is a module such as ``nn.SiLU()``. The quantiles are a non-persistent buffer
    (they follow ``.to()`` but are not saved in state dicts).
    """

    def __init__(self, channels: int, act: nn.Module, n_samples: int = PROXY_SAMPLES,
                 eps: float = PROXY_EPS):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.proxy_weight = nn.Parameter(torch.zeros(channels))
        self.proxy_bias = nn.Parameter(torch.zeros(channels))
        self.act = act
        self.eps = eps
        self.register_buffer("quantiles", proxy_quantiles(n_samples), persistent=False)

    def proxy_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance over the proxy of ``act(g Y + b)``, each ``[C]``."""
        proxy = self.proxy_bias[:, None] + (1 + self.proxy_weight[:, None]) * self.quantiles
        z = self.act(self.weight[:, None] * proxy + self.bias[:, None])  # [C, n]
        return z.mean(1), z.var(1, unbiased=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.proxy_stats()
        inv_std = torch.rsqrt(var + self.eps)
        # three passes over x: g x + b, the activation, y / std - mean / std
        y = self.act(torch.addcmul(self.bias[:, None, None], x, self.weight[:, None, None]))
        return torch.addcmul((-mean * inv_std)[:, None, None], y, inv_std[:, None, None])

    def extra_repr(self) -> str:
        return f"{len(self.weight)}, samples={len(self.quantiles)}, eps={self.eps}"
