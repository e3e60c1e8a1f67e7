import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.genome.build import build, count_flops, count_params
from nas.genome.grammar import feature_shapes, parse_genome
from nas.genome.space import load_baselines, load_space, sample

DEFAULT = load_space("default")
BASELINES = load_baselines()


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_sampled_networks_run_with_the_right_shapes(seed):
    genome = sample(DEFAULT, random.Random(seed))
    model = build(genome).eval()
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        assert model(x).shape == (2, 7)
        # the builder and the validator agree on every feature-map shape
        for block, expected in zip(model.features, feature_shapes(genome, DEFAULT.input_shape)):
            x = block(x)
            assert tuple(x.shape[1:]) == expected


def test_parameter_and_flop_counts_match_hand_computation():
    model = build(parse_genome("conv_k3_c8_s1_relu | gap"))
    assert count_params(model) == (9 * 8 + 8) + (8 * 7 + 7)
    # conv: 48*48 outputs * 8 channels * 9 MACs * 2 FLOPs; classifier: 8*7 MACs * 2
    assert count_flops(model) == 48 * 48 * 8 * 9 * 2 + 8 * 7 * 2


@pytest.mark.parametrize("name", list(BASELINES))
def test_baselines_build_with_their_stated_parameter_counts(name):
    base = BASELINES[name]
    n = count_params(build(base.genome))
    assert n == base.params, "the exact count drifted: a builder change altered a baseline"
    if base.literature_params:
        assert abs(n - base.literature_params) <= base.tolerance * base.literature_params
    assert build(base.genome)(torch.zeros(1, 1, 48, 48)).shape == (1, 7)


def test_residual_block_adds_its_input_and_projects_it_when_the_shape_changes():
    same = build(parse_genome("conv_k3_c16_s1_relu_bn | res_c16_s1_r1 | gap"))
    block = same.features[1][0]
    assert isinstance(block.skip, torch.nn.Identity)
    # two 3x3 convs without bias, two batch norms: 2 * (16 * 16 * 9) + 2 * (2 * 16)
    assert count_params(block) == 2 * 16 * 16 * 9 + 4 * 16
    x = torch.randn(2, 16, 12, 12)
    with torch.no_grad():
        block.eval()
        assert torch.allclose(block(x), torch.relu(block.body(x) + x))
    down = build(parse_genome("conv_k3_c16_s1_relu_bn | res_c32_s2_r2 | gap")).features[1]
    assert [type(u.skip).__name__ for u in down] == ["Sequential", "Identity"]  # 1x1 projection, then identity
    assert count_params(down[0].skip) == 16 * 32 + 2 * 32
    assert tuple(down(torch.zeros(1, 16, 48, 48)).shape) == (1, 32, 24, 24)


def test_network_records_its_genome():
    text = str(BASELINES["mini_xception"].genome)
    assert build(parse_genome(text)).genome == text
