"""Training-aware NAS (paper Section 3.3): the search space, the reward, the Pareto front and
a tiny search on real CIFAR-10."""

import numpy as np
import pandas as pd
import pytest
import torch

import ev2lite
from ev2lite.configs import FUSED, MBCONV, scaled_stages
from ev2lite.nas import (SearchSpace, architecture, pareto_front, preferences, reward, sample,
                         search, space_size, stage_block_ablation, stage_pattern_verdict,
                         stage_swaps)
from ev2lite.recipe import Recipe, Stage

BASE = ev2lite.get_config("efficientnetv2_cifar")


def test_space_size_of_the_cpu_scale_v2_space():
    space = SearchSpace(BASE)
    # V2-B0 at half depth has 1, 1, 1, 2, 3, 4 layers; with -1/0/+1 (at least 1) that leaves
    # 2, 2, 2, 3, 3, 3 layer counts; each stage also has 2 blocks x 2 kernels x 3 expand ratios.
    assert space.layer_choices() == [(1, 2), (1, 2), (1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5)]
    assert space_size(space) == 12 ** 6 * 2 ** 3 * 3 ** 3 == 644_972_544


def test_sampler_reaches_exactly_space_size_distinct_architectures():
    tiny = SearchSpace(BASE, kernels=(3,), expand_ratios=(4,), layer_deltas=(0,))
    assert space_size(tiny) == 2 ** 6  # only the block type varies, in 6 stages
    distinct = {architecture(c) for c in sample(tiny, 2000, seed=0)}
    assert len(distinct) == space_size(tiny)


def test_sampler_is_seeded():
    space = SearchSpace(BASE)
    assert sample(space, 5, seed=1) == sample(space, 5, seed=1)
    assert sample(space, 5, seed=1) != sample(space, 5, seed=2)
    assert sample(space, 3, seed=1) == sample(space, 5, seed=1)[:3]


def test_every_sample_is_valid_and_runs_forward(one_thread):
    space = SearchSpace(BASE)
    layers = space.layer_choices()
    for cfg in sample(space, 6, seed=0):
        for stage, base, allowed in zip(scaled_stages(cfg), scaled_stages(BASE), layers):
            assert (stage.in_channels, stage.out_channels, stage.stride) == (
                base.in_channels, base.out_channels, base.stride)  # the backbone's
            assert stage.block in (FUSED, MBCONV) and stage.kernel in (3, 5)
            assert stage.expand_ratio in (1, 4, 6) and stage.repeats in allowed
            assert stage.se_ratio == (0.25 if stage.block == MBCONV else 0.0)
        model = ev2lite.EfficientNet(cfg, num_classes=10).eval()
        assert [len(s) for s in model.stages] == [s.repeats for s in scaled_stages(cfg)]
        with torch.no_grad():
            assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_bad_search_spaces_are_refused():
    with pytest.raises(TypeError, match="ModelConfig"):
        SearchSpace("efficientnetv2_cifar")
    with pytest.raises(ValueError, match="blocks"):
        SearchSpace(BASE, blocks=("resnet",))
    with pytest.raises(ValueError, match="odd"):
        SearchSpace(BASE, kernels=(4,))
    with pytest.raises(ValueError, match="num"):
        sample(SearchSpace(BASE), -1)


def test_reward_is_the_papers_weighted_product():
    assert reward(0.8, 1.5, 2_000_000) == pytest.approx(0.8 * 1.5 ** -0.07 * 2_000_000 ** -0.05)
    table = pd.DataFrame({"a": [0.5, 0.9], "s": [2.0, 0.5], "p": [1e6, 3e5]})
    expected = [a * s ** -0.07 * p ** -0.05 for a, s, p in table.itertuples(index=False)]
    assert reward(table.a, table.s, table.p).tolist() == pytest.approx(expected)
    # slower or bigger at equal accuracy means a lower reward
    assert reward(0.8, 2.0, 1e6) < reward(0.8, 1.0, 1e6)
    assert reward(0.8, 1.0, 2e6) < reward(0.8, 1.0, 1e6)
    for bad in [(0.0, 1.0, 1e6), (0.5, -1.0, 1e6), (0.5, 1.0, pd.Series([1e6, 0]))]:
        with pytest.raises(ValueError, match="> 0"):
            reward(*bad)


def test_pareto_front_of_a_hand_made_table():
    table = pd.DataFrame({
        "name": ["fast", "accurate", "dominated", "small", "tie_of_fast", "worse_than_small"],
        "accuracy": [0.60, 0.80, 0.55, 0.60, 0.60, 0.59],
        "step_time_s": [0.10, 0.30, 0.20, 0.20, 0.10, 0.20],
        "params": [5e5, 9e5, 6e5, 1e5, 5e5, 1e5],
    })
    front = pareto_front(table)
    # "dominated" loses to "fast" everywhere; "worse_than_small" to "small"; equal rows both stay
    assert front.name.tolist() == ["fast", "accurate", "small", "tie_of_fast"]
    assert pareto_front(table, minimize=("step_time_s",)).name.tolist() == [
        "fast", "accurate", "tie_of_fast"]
    with pytest.raises(ValueError, match="latency"):
        pareto_front(table, minimize=("latency",))


def test_tiny_search_on_real_data(one_thread, real_split):
    data = (real_split("cifar10", "train").subset(40), real_split("cifar10", "test").subset(20))
    space = SearchSpace(BASE)
    references = {"efficientnet_cifar": ev2lite.get_config("efficientnet_cifar")}
    table = search(space, 2, data, [Stage(1, 16)], Recipe(batch_size=20, warmup_epochs=0),
                   seed=0, references=references, timing_repeats=1, timing_warmup=0)
    assert table.name.tolist() == ["efficientnetv2_cifar", "efficientnet_cifar",
                                   "sample_00", "sample_01"]
    assert table.kind.tolist() == ["backbone", "reference", "sample", "sample"]
    samples = sample(space, 2, seed=0)
    assert table.architecture.tolist()[2:] == [architecture(c) for c in samples]
    assert table.params.tolist() == [
        sum(p.numel() for p in ev2lite.EfficientNet(c, 10).parameters())
        for c in [BASE, references["efficientnet_cifar"], *samples]]
    assert table.norm_step_time.iloc[0] == 1.0
    assert table.accuracy.between(0, 1).all() and (table.step_time_s > 0).all()
    assert table.reward.tolist() == pytest.approx(
        reward(table.accuracy, table.norm_step_time, table.params).tolist())
    assert table.block_7.isna().tolist() == [True, False, True, True]  # only V1 has 7 stages
    samples_table = table[table.kind == "sample"]
    prefs = preferences(samples_table, "params")
    assert set(prefs.choice) == {"block", "kernel", "expand"}
    assert set(prefs.stage) == set(range(1, 7))
    assert prefs.groupby(["stage", "choice"])["count"].sum().eq(2).all()
    for row in prefs.itertuples():
        chose = samples_table[samples_table[f"{row.choice}_{row.stage}"] == row.option]
        assert row.mean == chose.params.mean() and row.count == len(chose)


def test_stage_swaps_switch_one_stage_block_each():
    space = SearchSpace(BASE)
    swaps = stage_swaps(space)
    assert list(swaps)[0] == BASE.name and len(swaps) == len(BASE.stages) + 1
    for i, (name, cfg) in enumerate(list(swaps.items())[1:]):
        changed = [j for j, (a, b) in enumerate(zip(BASE.stages, cfg.stages)) if a != b]
        assert changed == [i]
        new, old = cfg.stages[i], BASE.stages[i]
        assert new.block != old.block and name.endswith("mbconv" if new.block == MBCONV else "fused")
        assert (new.expand_ratio, new.kernel, new.repeats, new.stride) == (
            old.expand_ratio, old.kernel, old.repeats, old.stride)
        assert new.se_ratio == (space.se_ratio if new.block == MBCONV else 0.0)
    # V2-B0's table: Fused-MBConv in stages 1-3, MBConv in 4-6 (Table 4's pattern)
    assert [n.split("_")[1] for n in list(swaps)[1:]] == ["mbconv"] * 3 + ["fused"] * 3


def test_stage_block_ablation_pairs_each_stage_with_its_swap(one_thread):
    table = stage_block_ablation(SearchSpace(BASE), 16, 2, warmup=0, repeats=3)
    assert list(table.stage) == [1, 2, 3, 4, 5, 6]
    assert list(table.backbone_block) == [FUSED] * 3 + [MBCONV] * 3
    assert np.allclose(table.fused_over_mbconv, table.fused_step_ms / table.mbconv_step_ms)
    for row in table.itertuples():
        expected = ("tie" if np.isnan(row.band_low) or row.band_low <= 1 <= row.band_high else
                    "Fused-MBConv" if row.band_high < 1 else "MBConv")
        assert row.faster == expected
    # a Fused-MBConv block holds a dense KxK conv where MBConv has a 1x1 and a depthwise KxK:
    # more multiply-adds and parameters in every stage whose expand ratio exceeds 1
    expands = [s.expand_ratio for s in BASE.stages]
    assert all(r > 1 for r, e in zip(table.fused_over_mbconv_macs, expands) if e > 1)


@pytest.mark.parametrize("faster, verdict", [
    (["Fused-MBConv"] * 3 + ["MBConv", "tie", "MBConv"], "holds"),
    (["Fused-MBConv", "tie", "Fused-MBConv"] + ["MBConv"] * 3, "inconclusive"),
    (["Fused-MBConv", "MBConv", "Fused-MBConv"] + ["MBConv"] * 3, "fails"),
    (["Fused-MBConv"] * 3 + ["MBConv", "Fused-MBConv", "MBConv"], "fails"),
])
def test_stage_pattern_verdict_follows_the_faster_block_per_stage(faster, verdict):
    table = pd.DataFrame({"stage": range(1, 7), "faster": faster})
    assert stage_pattern_verdict(table)[0] == verdict
