"""Notebook 04's deterministic facts: Table 4, exact parameters and multiply-adds of the model
families, the scaling rules of V1 and V2 in our configs, and :class:`ev2lite.measure.InferenceStep`.

Everything is counted on the meta device (no memory, no compute); nothing here is timed.
"""

import functools
import math

import pandas as pd
import pytest
import torch
import torchvision

from ev2lite import create_model
from ev2lite.measure import InferenceStep, count_params, meta_model, multiply_adds
from ev2lite.models import get_config, stage_table
from ev2lite.paper import paper_table

madds = functools.cache(multiply_adds)  # each count once per session
V1 = [f"efficientnet_b{i}" for i in range(8)]
V2 = ["efficientnetv2_s", "efficientnetv2_m", "efficientnetv2_l", "efficientnetv2_xl"]


def test_stage_table_of_v2_s_equals_paper_table4():
    ours = stage_table(get_config("efficientnetv2_s")).astype(str)
    pd.testing.assert_frame_equal(ours, paper_table("table4_efficientnetv2_s"))


def test_stage_table_follows_width_and_depth_scaling():
    table = stage_table(get_config("efficientnet_b4"))  # width 1.4, depth 1.8
    assert table.channels.tolist() == [48, 24, 32, 56, 112, 160, 272, 448, 1792]
    assert table.layers.tolist() == [1, 2, 4, 4, 6, 6, 8, 2, 1]


# Counted against an independent implementation with the same counter: timm's architectures
# (tf_ variants: the released TF models; SAME padding adds no multiply-adds).
MULTIPLY_ADDS = {
    ("efficientnet_b4", 380): "timm:efficientnet_b4",     # torchvision: 4.394 GFLOPS
    ("efficientnetv2_b0", 224): "timm:tf_efficientnetv2_b0",
    ("efficientnetv2_b3", 300): "timm:tf_efficientnetv2_b3",
}


@pytest.mark.parametrize("name,size", MULTIPLY_ADDS)
def test_multiply_adds_match_timm(name, size):
    assert madds(name, size) == multiply_adds(meta_model(MULTIPLY_ADDS[name, size]), size)


@pytest.mark.parametrize("name", ["efficientnet_b1", "efficientnet_b4"])
def test_multiply_adds_match_torchvision_published_counts(name):
    weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    assert round(madds(name, weights.transforms().crop_size[0]) / 1e9, 3) == weights.meta["_ops"]


def test_count_params_takes_a_name_and_builds_on_the_meta_device():
    assert count_params("efficientnetv2_b3") == 14_358_406
    with torch.device("meta"):
        assert count_params("efficientnet_b1") == count_params(create_model("efficientnet_b1"))
    with pytest.raises(ValueError, match="efficientnetv2_s"):
        count_params("efficientnetv2s")


def test_v1_compound_scaling_grows_every_stage_by_the_depth_coefficient():
    base = stage_table(get_config("efficientnet_b0")).layers[1:-1]
    for name in V1:
        cfg = get_config(name)
        layers = stage_table(cfg).layers[1:-1]
        assert layers.tolist() == [math.ceil(r * cfg.depth_mult) for r in base]
        assert cfg.train_size == cfg.eval_size
    sizes = [get_config(name).eval_size for name in V1]
    assert sizes == sorted(sizes) and sizes[-1] == 600


def test_v2_caps_the_image_size_and_trains_smaller_than_it_tests():
    cfgs = {name: get_config(name) for name in V2}
    assert [c.eval_size for c in cfgs.values()] == [384, 480, 480, 512]  # XL: released config
    assert max(c.eval_size for c in list(cfgs.values())[:3]) == 480        # Section 3.3's rule
    assert all(c.train_size < c.eval_size for c in cfgs.values())
    assert max(c.train_size for c in cfgs.values()) == 384


def test_v2_adds_most_layers_to_later_stages():
    s = stage_table(get_config("efficientnetv2_s")).layers[1:-1].tolist() + [0]  # S has no stage 7
    for name in V2[1:]:
        big = stage_table(get_config(name)).layers[1:-1].tolist()
        added = [b - a for a, b in zip(s, big)]
        assert all(a > 0 for a in added)
        assert sum(added[4:]) >= 2 * sum(added[:4])  # stages 5-7 get at least two thirds
    v1_base = stage_table(get_config("efficientnet_b0")).layers[1:-1].tolist()
    for name in V1[1:]:  # compound scaling: stages 5-7 get about half (their share in B0)
        added = [b - a for a, b in zip(v1_base, stage_table(get_config(name)).layers[1:-1])]
        assert sum(added[4:]) < 2 * sum(added[:4])


def test_inference_step_runs_a_copy_in_eval_mode(one_thread):
    torch.manual_seed(0)
    model = create_model("efficientnetv2_cifar", num_classes=10).train()
    step = InferenceStep(model, 32, 3)
    logits = step()
    assert logits.shape == (3, 10) and not logits.requires_grad
    assert model.training and not step.model.training and step.model is not model
    assert torch.equal(step(), logits)  # eval mode: dropout and batch statistics are off
    assert step.x.is_contiguous(memory_format=torch.channels_last)


def test_inference_step_refuses_bad_input(one_thread):
    model = create_model("efficientnetv2_cifar", num_classes=10)
    with pytest.raises(ValueError, match="precision"):
        InferenceStep(model, 32, 2, precision="fp16")
    with pytest.raises(ValueError, match="at least"):
        InferenceStep(create_model("efficientnetv2_b0"), 16, 1)()
