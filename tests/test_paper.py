"""The paper's tables in ``data/paper/*.csv``: every file loads, names its source, and the numbers
that the paper's prose repeats (or that the tables imply about themselves) agree with the transcription."""

import csv
import math
import re

import pandas as pd
import pytest

from ev2lite.paper import PAPER_DIR, paper_table

# The paper's and the article's tables; claims.csv and own_findings.csv are the claims engine's
# inputs, checked by ev2lite.claims.load_claims (tests/test_claims.py).
STEMS = sorted(p.stem for p in PAPER_DIR.glob("*.csv") if p.stem not in ("claims", "own_findings"))
NUMERIC_SUFFIXES = ("_pct", "_m", "_b", "_hours", "_ms", "_per_s", "_per_core", "_per_gpu",
                    "_or_gpu", "_x", "_size", "_images", "classes", "batch_size")


def _num(frame: pd.DataFrame, column: str, **where) -> float:
    rows = frame
    for key, value in where.items():
        rows = rows[rows[key] == value]
    assert len(rows) == 1, f"{where} matches {len(rows)} rows"
    return float(rows[column].iloc[0])


def test_the_expected_tables_are_there():
    expected = {
        "table1_efficiency", "table2_b6_throughput", "table3_fused_mbconv", "table4_efficientnetv2_s",
        "table5_image_size_randaug", "table6_progressive_settings", "table7_imagenet",
        "table8_transfer", "table11_scaling_down", "table12_progressive_other_networks",
        "table13_adaptive_regularization", "graphcore_claims",
    }
    assert expected <= set(STEMS)


@pytest.mark.parametrize("stem", STEMS)
def test_table_loads_names_its_source_and_has_no_empty_column(stem):
    frame = paper_table(stem)
    source = frame.attrs["source"]
    assert source.strip()
    assert re.search(r"\b(Table \d+|Figure \d+|article)\b", source), source
    assert len(frame) > 0
    assert not frame.columns.duplicated().any()
    for column in frame.columns:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", column), f"{stem}: column {column!r} is not snake_case"
        assert frame[column].notna().any(), f"{stem}: column {column!r} is entirely empty"


@pytest.mark.parametrize("stem", STEMS)
def test_every_row_has_as_many_fields_as_the_header(stem):
    lines = [line for line in (PAPER_DIR / f"{stem}.csv").read_text().splitlines() if not line.startswith("#")]
    rows = list(csv.reader(lines))
    assert all(len(row) == len(rows[0]) for row in rows), stem
    assert "#" not in "".join(lines), "read_csv(comment='#') would cut a line short"


@pytest.mark.parametrize("stem", STEMS)
def test_unit_columns_hold_numbers(stem):
    frame = paper_table(stem)
    for column in frame.columns:
        if column.endswith(NUMERIC_SUFFIXES):
            for value in frame[column].dropna():
                if value != "OOM":
                    float(value)  # raises on anything else


def test_table7_efficientnetv2_s():
    t7 = paper_table("table7_imagenet")
    s = dict(model="EfficientNetV2-S")
    assert _num(t7, "top1_pct", **s) == 83.9
    assert _num(t7, "params_m", **s) == 22
    assert _num(t7, "flops_b", **s) == 8.8
    assert _num(t7, "train_time_hours", **s) == 7.1
    assert _num(t7, "infer_time_ms", **s) == 24
    assert set(t7["group"]) == {"ConvNets & Hybrid", "Vision Transformers", "ConvNets (ours)"}
    assert set(t7["pretrain"]) == {"imagenet", "imagenet21k"}
    assert (t7["pretrain"] == "imagenet21k").sum() == 7
    assert len(t7) == 36


def test_table7_matches_the_prose():
    t7 = paper_table("table7_imagenet")
    # "EfficientNetV2-M achieves comparable accuracy to EfficientNet-B7 while training 11x faster"
    b7_over_m = _num(t7, "train_time_hours", model="EfficientNet-B7") / _num(t7, "train_time_hours", model="EfficientNetV2-M")
    assert round(b7_over_m) == 11
    # "EfficientNetV2-L(21k) improves the top-1 accuracy by 1.5% (85.3% vs. 86.8%), using 2.5x fewer
    # parameters and 3.6x fewer FLOPs" than ViT-L/16(21k)
    vit, ours = dict(model="ViT-L/16 (21k)"), dict(model="EfficientNetV2-L (21k)")
    assert (_num(t7, "top1_pct", **vit), _num(t7, "top1_pct", **ours)) == (85.3, 86.8)
    assert round(_num(t7, "params_m", **vit) / _num(t7, "params_m", **ours), 1) == 2.5
    assert round(_num(t7, "flops_b", **vit) / _num(t7, "flops_b", **ours), 1) == 3.6
    # "EfficientNetV2-M achieves 0.6% better accuracy [than ResNeSt] with 2.8x faster inference"
    m, rs = dict(model="EfficientNetV2-M"), dict(model="ResNeSt-269")
    assert round(_num(t7, "top1_pct", **m) - _num(t7, "top1_pct", **rs), 1) == 0.6
    assert round(_num(t7, "infer_time_ms", **rs) / _num(t7, "infer_time_ms", **m), 1) == 2.8
    # "EfficientNetV2 achieves 87.3% top-1 accuracy" (XL, 21k) and V2-L "85.7%" on ImageNet alone
    assert _num(t7, "top1_pct", model="EfficientNetV2-XL (21k)") == 87.3
    assert _num(t7, "top1_pct", model="EfficientNetV2-L") == 85.7


def test_table13_adaptive_regularization():
    t13 = paper_table("table13_adaptive_regularization")
    prog_vanilla = dict(method="progressive resize", regularization="vanilla")
    prog_adaptive = dict(method="progressive resize", regularization="adaptive")
    assert (_num(t13, "top1_pct", **prog_vanilla), _num(t13, "top1_std_pct", **prog_vanilla)) == (84.3, 0.14)
    assert (_num(t13, "top1_pct", **prog_adaptive), _num(t13, "top1_std_pct", **prog_adaptive)) == (85.1, 0.07)
    for method in ("progressive resize", "random resize"):
        gain = _num(t13, "top1_pct", method=method, regularization="adaptive") - _num(
            t13, "top1_pct", method=method, regularization="vanilla")
        assert math.isclose(gain, _num(t13, "gain_pct", method=method, regularization="adaptive"), abs_tol=1e-9)


def test_table2_speedup_is_the_prose_2_2x():
    t2 = paper_table("table2_b6_throughput")
    assert _num(t2, "imgs_per_s_per_core_or_gpu", train_size="380", device="TPUv3", batch_size="128") == 93
    assert (t2["imgs_per_s_per_core_or_gpu"] == "OOM").sum() == 2
    tpu = t2[(t2["device"] == "TPUv3") & (t2["imgs_per_s_per_core_or_gpu"] != "OOM")]
    speeds = tpu["imgs_per_s_per_core_or_gpu"].astype(float)
    assert round(speeds.max() / speeds.min(), 1) == 2.2  # "improves training speed by up to 2.2x"


def test_table3_params_and_flops():
    t3 = paper_table("table3_fused_mbconv")
    got = list(zip(t3["params_m"].astype(float), t3["flops_b"].astype(float)))
    assert got == [(19.3, 4.5), (20.0, 7.5), (43.4, 21.3), (132.0, 34.4)]
    assert t3["fused_stages"].fillna("").tolist() == ["", "1-3", "1-5", "1-7"]


def test_table6_progressive_settings():
    t6 = paper_table("table6_progressive_settings")
    assert _num(t6, "max", model="EfficientNetV2-S", setting="image_size") == 300
    assert _num(t6, "max", model="EfficientNetV2-L", setting="randaugment") == 25
    assert set(t6["min"][t6["setting"] == "image_size"]) == {"128"}  # same minimum for all models


def test_table8_matches_the_prose():
    t8 = paper_table("table8_transfer")
    # "on CIFAR-100, EfficientNetV2-L achieves 0.6% better accuracy than prior GPipe/EfficientNets and
    # 1.5% better accuracy than prior ViT/DeiT models"
    v2l = _num(t8, "cifar100_pct", model="EfficientNetV2-L")
    assert round(v2l - _num(t8, "cifar100_pct", model="EfficientNet-B7"), 1) == 0.6
    assert round(v2l - t8["cifar100_pct"][t8["group"] == "Vision Transformers"].astype(float).max(), 1) == 1.5


def test_table11_speedups_are_throughput_ratios():
    t11 = paper_table("table11_scaling_down")
    for _, row in t11.dropna(subset=["speedup_x"]).iterrows():
        ratio = float(row["throughput_imgs_per_s"]) / _num(t11, "throughput_imgs_per_s", model=row["speedup_vs"])
        assert round(ratio, 1) == pytest.approx(float(row["speedup_x"]), abs=0.1)
    assert _num(t11, "top1_pct", model="V2-S") == 83.6


def test_table12_matches_the_prose():
    t12 = paper_table("table12_progressive_other_networks")

    def hours(model, training):
        return _num(t12, "train_time_hours", model=model, training=training)

    # "ResNet50(224) ... (1.4x speedup)", "ResNet152(380) ... 2.1x", "EfficientNet-B4 ... 2.2x"
    # (15.5h / 7.2h = 2.15: the prose truncates where rounding would give 2.2)
    for model, speedup in [("ResNet50 (224)", 1.4), ("ResNet152 (380)", 2.1), ("EfficientNet-B4", 2.2)]:
        assert hours(model, "baseline") / hours(model, "progressive") == pytest.approx(speedup, abs=0.06)
    for model in t12["model"].unique():
        change = 100 * (hours(model, "progressive") / hours(model, "baseline") - 1)
        assert round(change) == pytest.approx(
            _num(t12, "train_time_change_pct", model=model, training="progressive"), abs=1)


def test_graphcore_headline_numbers():
    claims = paper_table("graphcore_claims")
    values = set(claims["value"].astype(float))
    assert {7.0, 3.6, 3.0, 16.0, 4.0} <= values
