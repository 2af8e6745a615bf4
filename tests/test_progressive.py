"""Algorithm 1 and its variants: stage values, interpolations, presets."""

import pytest

from ev2lite.progressive import (CPU_PRESETS, TABLE6, ProgressivePlan, fixed_stages,
                                 progressive_stages, random_resize_stages)

PLAN = ProgressivePlan((128, 300), {"randaugment": (5, 15), "mixup_alpha": (0, 0.3), "dropout": (0.1, 0.3)})


def test_paper_interpolation_runs_from_first_to_last_values():
    stages = progressive_stages(PLAN, epochs=8, num_stages=4, interpolation="paper")
    assert [s.image_size for s in stages] == [128, 185, 242, 300]  # 128 + 172 * i/3, truncated
    assert [s.randaugment for s in stages] == pytest.approx([5, 5 + 10 / 3, 5 + 20 / 3, 15])
    assert [s.dropout for s in stages] == pytest.approx([0.1, 0.1 + 0.2 / 3, 0.1 + 0.4 / 3, 0.3])
    assert [s.epochs for s in stages] == [2, 2, 2, 2]


def test_official_interpolation_matches_released_code():
    stages = progressive_stages(TABLE6["efficientnetv2_s"], epochs=348, interpolation="official")
    assert [s.image_size for s in stages] == [171, 214, 257, 300]  # REFERENCE.md section 3
    assert all(s.dropout is None for s in stages)  # computed, then not applied
    assert [s.epochs for s in stages] == [87] * 4


def test_vanilla_keeps_final_regularization_at_every_size():
    stages = progressive_stages(PLAN, epochs=4, adaptive=False)
    assert [s.image_size for s in stages] == [128, 185, 242, 300]
    assert {(s.randaugment, s.mixup_alpha, s.dropout) for s in stages} == {(15, 0.3, 0.3)}


def test_epochs_not_divisible_put_the_remainder_last():
    assert [s.epochs for s in progressive_stages(PLAN, epochs=10)] == [2, 2, 3, 3]
    with pytest.raises(ValueError, match="num_stages <= epochs"):
        progressive_stages(PLAN, epochs=3)


def test_fixed_and_fixres_baselines():
    (stage,) = fixed_stages(PLAN, epochs=5)
    assert (stage.image_size, stage.randaugment, stage.epochs) == (300, 15, 5)
    assert fixed_stages(PLAN, epochs=5, image_size=224)[0].image_size == 224


def test_random_resize_draws_from_the_grid_and_is_reproducible():
    a = random_resize_stages(PLAN, epochs=12, seed=1)
    assert a == random_resize_stages(PLAN, epochs=12, seed=1)
    assert {s.image_size for s in a} <= {128, 185, 242, 300} and len(a) == 12
    for s in a:  # adaptive: regularization follows the drawn size
        ratio = (s.image_size - 128) / 172
        assert s.randaugment == pytest.approx(5 + 10 * ratio, abs=0.1)
    vanilla = random_resize_stages(PLAN, epochs=12, seed=1, adaptive=False, every=8)
    assert [s.epochs for s in vanilla] == [8, 4] and {s.randaugment for s in vanilla} == {15}


def test_impossible_plans_are_refused():
    with pytest.raises(ValueError, match="S_0 <= S_e"):
        ProgressivePlan((300, 128))
    with pytest.raises(ValueError, match="unknown regularizer"):
        ProgressivePlan((128, 300), {"mixup": (0, 1)})
    with pytest.raises(ValueError, match="interpolation"):
        progressive_stages(PLAN, 8, interpolation="linear")


def test_cpu_presets_fit_the_datasets():
    assert CPU_PRESETS["cifar10"].size[1] == 32 and CPU_PRESETS["imagenette"].size[1] <= 160


def test_official_interpolation_splits_mixup_and_cutmix():
    plan = ProgressivePlan((16, 32), {"mixup_alpha": (0, 0.2), "cutmix_alpha": (0, 1.0)})
    assert {s.mix_mode for s in progressive_stages(plan, 4, interpolation="official")} == {"split"}
    assert {s.mix_mode for s in progressive_stages(plan, 4)} == {"choice"}


def test_split_mixing_mixes_each_half_with_its_own_method():
    import torch

    from ev2lite.augment import mixup_cutmix

    torch.manual_seed(0)
    x, y = torch.rand(8, 3, 16, 16), torch.arange(8) % 4
    mixed, soft = mixup_cutmix(0.4, 1.0, 4, mode="split")(x, y)
    assert mixed.shape == x.shape and soft.shape == (8, 4)
    assert torch.allclose(soft.sum(1), torch.ones(8))
    # CutMix pastes a box of another image: most pixels stay exactly as they were. Mixup blends
    # every pixel, so (almost) none does.
    assert (mixed[4:] == x[4:]).float().mean() > 0.2
    assert (mixed[:4] == x[:4]).float().mean() < 0.01


def test_held_at_keeps_the_sizes_and_holds_each_regularizer_at_one_value():
    plan = ProgressivePlan((16, 32), {"randaugment": (5, 15), "dropout": (0.1, 0.3)})
    weak = progressive_stages(plan.held_at(0.0), epochs=8, num_stages=4)
    strong = progressive_stages(plan, epochs=8, num_stages=4, adaptive=False)
    adaptive = progressive_stages(plan, epochs=8, num_stages=4)
    assert [s.image_size for s in weak] == [s.image_size for s in adaptive] == [16, 21, 26, 32]
    assert {s.randaugment for s in weak} == {5} and {s.dropout for s in weak} == {0.1}
    assert {s.randaugment for s in strong} == {15}
    assert [s.randaugment for s in adaptive] == [5, pytest.approx(5 + 10 / 3), pytest.approx(5 + 20 / 3), 15]
