"""Progressive learning with adaptive regularization (paper Section 4, Algorithm 1, Table 6).

Training is split into M stages. Stage i trains at image size S_i with regularization
magnitudes phi_i, both linearly interpolated from the first values (S_0, phi_0) to the last
(S_e, phi_e); weights, optimizer state and the learning-rate schedule carry over. Every function
here returns a plain list of :class:`ev2lite.recipe.Stage` for :func:`ev2lite.train.fit`: there is
no second training loop.

Two interpolations exist (REFERENCE.md section 3):

* ``"paper"`` (Algorithm 1): ratio ``i / (M - 1)``, so the first stage uses exactly (S_0, phi_0)
  and the last (S_e, phi_e).
* ``"official"`` (google/automl ``efficientnetv2/main.py``): ratio ``(i + 1) / M``, so the first
  stage is already one step up (V2-S: 171, 214, 257, 300 px), the dropout schedule is
  computed but not applied (dropout stays at the model's value), and with both mixup and
  CutMix on each takes half of every batch (``Stage.mix_mode="split"``).

Regularization keys are :class:`~ev2lite.recipe.Stage` fields: ``randaugment`` (the paper's TF
scale, see :func:`ev2lite.augment.rand_augment`), ``mixup_alpha``, ``cutmix_alpha``,
``dropout``, ``stochastic_depth``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .recipe import Stage

REGULARIZERS = ("randaugment", "mixup_alpha", "cutmix_alpha", "dropout", "stochastic_depth")


@dataclass(frozen=True)
class ProgressivePlan:
    """First and last image size (px) and regularization magnitudes of a progressive run.

    ``regularization`` maps a regularizer name (one of :data:`REGULARIZERS`) to its
    ``(phi_0, phi_e)`` pair. Raises ``ValueError`` for an unknown regularizer, a size below 1 or
    a decreasing size.
    """

    size: tuple[int, int]
    regularization: dict[str, tuple[float, float]] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self):
        unknown = set(self.regularization) - set(REGULARIZERS)
        if unknown:
            raise ValueError(f"unknown regularizer(s) {sorted(unknown)}: choose from {REGULARIZERS}")
        if not 1 <= self.size[0] <= self.size[1]:
            raise ValueError(f"image sizes must satisfy 1 <= S_0 <= S_e, got {self.size}")

    def at(self, ratio: float, adaptive: bool = True) -> tuple[int, dict[str, float]]:
        """Image size and regularization at interpolation ``ratio`` in [0, 1].

        With ``adaptive=False`` ("vanilla" progressive resizing, Howard 2018) the regularization
        stays at its final strength phi_e whatever the size.
        """
        s0, se = self.size
        size = int(s0 + (se - s0) * ratio)
        reg = {k: (v0 + (ve - v0) * ratio if adaptive else ve)
               for k, (v0, ve) in self.regularization.items()}
        return size, reg

    def held_at(self, ratio: float) -> ProgressivePlan:
        """This plan with every regularizer held constant at its value at ``ratio`` (0: the
        first, weakest values; 1: the last): the *constant weak* (``0``) or *constant strong*
        (``1``) controls beside adaptive regularization (Table 13's vanilla is constant strong).
        The image sizes are kept."""
        _, reg = self.at(ratio)
        return ProgressivePlan(self.size, {k: (v, v) for k, v in reg.items()},
                               f"{self.source}, regularization held at ratio {ratio:g}")


def _split_epochs(epochs: int, num_stages: int) -> list[int]:
    """N/M epochs per stage; the remainder goes to the last stages (they run at full size)."""
    if num_stages < 1 or epochs < num_stages:
        raise ValueError(f"need 1 <= num_stages <= epochs, got {num_stages} stages for {epochs} epochs")
    base, extra = divmod(epochs, num_stages)
    return [base + (i >= num_stages - extra) for i in range(num_stages)]


def progressive_stages(plan: ProgressivePlan, epochs: int, num_stages: int = 4, *,
                       adaptive: bool = True, interpolation: str = "paper") -> list[Stage]:
    """Algorithm 1: ``num_stages`` stages of growing image size (and regularization if adaptive).

    ``interpolation`` is ``"paper"`` (ratio i/(M-1)) or ``"official"`` (ratio (i+1)/M, dropout
    not scheduled, mixup and CutMix on half a batch each). With one stage the paper's ratio is taken as 1 (the final values).
    Raises ``ValueError`` for an unknown interpolation or fewer epochs than stages.
    """
    if interpolation not in ("paper", "official"):
        raise ValueError(f"interpolation must be 'paper' or 'official', got {interpolation!r}")
    stages = []
    for i, stage_epochs in enumerate(_split_epochs(epochs, num_stages)):
        if interpolation == "paper":
            ratio = i / (num_stages - 1) if num_stages > 1 else 1.0
        else:
            ratio = (i + 1) / num_stages
        size, reg = plan.at(ratio, adaptive)
        if interpolation == "official":
            reg.pop("dropout", None)
            reg["mix_mode"] = "split"
        stages.append(Stage(epochs=stage_epochs, image_size=size, **reg))
    return stages


def fixed_stages(plan: ProgressivePlan, epochs: int, image_size: int | None = None) -> list[Stage]:
    """The baseline: one stage at ``image_size`` (default S_e) with the final regularization.

    A size below the test size is FixRes-style training (Touvron et al. 2019): set
    ``Recipe.eval_size`` to the larger test size.
    """
    size, reg = plan.at(1.0)
    return [Stage(epochs=epochs, image_size=image_size or size, **reg)]


def random_resize_stages(plan: ProgressivePlan, epochs: int, num_sizes: int = 4, *,
                         every: int = 1, adaptive: bool = True, seed: int = 0) -> list[Stage]:
    """Random resizing (Mix&Match, Hoffer et al. 2019; paper Table 13).

    Every ``every`` epochs a size is drawn uniformly from the ``num_sizes`` sizes of the paper's
    interpolation grid (the paper's TPU runs drew one every 8 epochs, to avoid recompiling; the
    original draws per batch). With ``adaptive`` the regularization follows the drawn size as in
    Algorithm 1; without it stays at phi_e. Deterministic for a given ``seed``.
    """
    rng = random.Random(seed)
    grid = [i / (num_sizes - 1) if num_sizes > 1 else 1.0 for i in range(num_sizes)]
    stages = []
    for start in range(0, epochs, every):
        size, reg = plan.at(rng.choice(grid), adaptive)
        stages.append(Stage(epochs=min(every, epochs - start), image_size=size, **reg))
    return stages


# Paper Table 6 (min -> max over 4 stages of ~87 epochs), RandAugment magnitudes on the paper's TF
# scale (ev2lite.augment.rand_augment). The released code uses 5 less at the top (REFERENCE.md 3).
TABLE6 = {
    "efficientnetv2_s": ProgressivePlan((128, 300), {"randaugment": (5, 15), "mixup_alpha": (0, 0),
                                                     "dropout": (0.1, 0.3)}, "Table 6, S"),
    "efficientnetv2_m": ProgressivePlan((128, 380), {"randaugment": (5, 20), "mixup_alpha": (0, 0.2),
                                                     "dropout": (0.1, 0.4)}, "Table 6, M"),
    "efficientnetv2_l": ProgressivePlan((128, 380), {"randaugment": (5, 25), "mixup_alpha": (0, 0.4),
                                                     "dropout": (0.1, 0.5)}, "Table 6, L"),
}

# CPU-scale presets for this project's small models (ours, not the paper's): the same shape as
# Table 6, sizes fitted to the datasets' native resolutions (CIFAR-10 32 px, Imagenette 160 px).
CPU_PRESETS = {
    "cifar10": ProgressivePlan((16, 32), {"randaugment": (0, 3), "mixup_alpha": (0, 0.2),
                                          "dropout": (0.05, 0.2)}, "ev2lite CPU preset"),
    "imagenette": ProgressivePlan((64, 128), {"randaugment": (1, 4), "mixup_alpha": (0, 0.2),
                                              "dropout": (0.1, 0.3)}, "ev2lite CPU preset"),
}
