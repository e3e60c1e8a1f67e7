import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.errors import GenomeError
from nas.genome.grammar import Genome, InvertedResidual, canonical, format_genome, parse_genome
from nas.genome.space import load_space, sample

DEFAULT = load_space("default")

EXAMPLES = [
    "conv_k3_c32_s1_relu | pool_max | ir_k3_e4_c64_s2_r2 | gap | dense_u128_d0.5",
    "conv_k5_c16_s2_hardswish_bn | ir_k3_e1_c16_s1_r1_se | flat",
    "pool_avg | conv_k3_c8_s1_relu6_bn | gap | dense_u64_d0 | dense_u32_d0.25",
    "conv_k3_c32_s1_relu_bn | res_c32_s1_r2 | res_c64_s2_r1 | flat",
]


@pytest.mark.parametrize("text", EXAMPLES)
def test_examples_round_trip_exactly(text):
    assert format_genome(parse_genome(text)) == text


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty genome"),
        ("conv_k3_c32_s1_relu | bogus_x1", "block 1: unknown block type"),
        ("conv_c32_k3_s1_relu | gap", "block 0: cannot parse"),  # tokens out of order
        ("conv_k3_c32_s1_relu_bn_extra | gap", "block 0: cannot parse"),  # unknown token
        ("conv_k3_c032_s1_relu | gap", "block 0: cannot parse"),  # leading zero
        ("gap | dense_u128_d0.50", "block 1: 'dense_u128_d0.50' is not canonical; write 'dense_u128_d0.5'"),
        ("conv_k3_c32_s1_relu |gap", "not canonical"),  # spacing is part of the one spelling
        ("ir_k3_e4_c64_s2 | gap", "expected ir_k<kernel>_e<expansion>_c<channels>_s<stride>_r<repeats>[_se]"),
        (
            "res_k3_c64_s2_r1 | gap",
            "block 0: cannot parse 'res_k3_c64_s2_r1'; expected res_c<channels>_s<stride>_r<repeats>",
        ),
        ("gap | relu", "block 1: unknown block type in 'relu' (known: conv, pool, ir, res, dense, gap, flat)"),
        ("ir_k3_e4_c64_s1_r100000000 | gap", "ir repeats 100000000 is outside the legal range (1 to 64)"),
        ("conv_k3_c100000_s1_relu | gap", "conv channels 100000 is outside the legal range"),
        ("gap | dense_u1000000000_d0", "dense units 1000000000 is outside the legal range"),
    ],
)
def test_bad_strings_give_one_line_errors(text, message):
    with pytest.raises(GenomeError) as exc:
        parse_genome(text)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_a_genome_given_outside_a_search_is_refused_beyond_any_networks_size_before_it_is_built():
    from nas.genome.space import MAX_PARAMS, checked_genome

    with pytest.raises(GenomeError, match=rf"--genome: [\d,]+ parameters, more than the {MAX_PARAMS:,}"):
        checked_genome("ir_k3_e64_c4096_s1_r64 | gap", "--genome")  # 135 billion: counted, never allocated
    assert str(checked_genome("conv_k3_c16_s2_relu_bn | gap", "--genome")) == "conv_k3_c16_s2_relu_bn | gap"


def test_same_network_same_hash():
    merged = parse_genome("conv_k3_c8_s1_relu | ir_k3_e4_c64_s2_r2 | gap")
    split = parse_genome("conv_k3_c8_s1_relu | ir_k3_e4_c64_s2_r1 | ir_k3_e4_c64_s1_r1 | gap")
    assert merged != split and merged.key == split.key
    assert canonical(split) == merged
    other = parse_genome("conv_k3_c8_s1_relu | ir_k3_e4_c64_s2_r1 | ir_k3_e4_c64_s1_r1_se | gap")
    assert other.key != merged.key
    res = parse_genome("res_c16_s2_r1 | res_c16_s1_r2 | gap")
    assert canonical(res) == parse_genome("res_c16_s2_r3 | gap")
    assert res.key != parse_genome("res_c16_s1_r1 | res_c16_s2_r2 | gap").key  # the stride is not the first


def test_genome_is_immutable_and_hashable():
    g = parse_genome(EXAMPLES[0])
    assert {g: 1}[parse_genome(EXAMPLES[0])] == 1
    with pytest.raises(AttributeError):
        g.genes[2].channels = 5  # type: ignore[misc]
    assert isinstance(g.genes[2], InvertedResidual)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_sampled_genomes_round_trip_and_hash_equally(seed):
    g = sample(DEFAULT, random.Random(seed))
    text = format_genome(g)
    again = parse_genome(text)
    assert again == g and format_genome(again) == text
    assert again.key == g.key
    assert Genome(tuple(g.genes)).key == g.key
