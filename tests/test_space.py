import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.errors import GenomeError, SpaceError
from nas.genome.grammar import Conv, Dense, Genome, InvertedResidual, Pool, Readout, parse_genome
from nas.genome.space import (
    choices,
    crossover,
    draw,
    is_valid,
    load_baselines,
    load_space,
    mutate,
    problems,
    repair,
    sample,
    validate,
)

DEFAULT = load_space("default")
TINY = load_space("tiny")


def test_bundled_spaces_load():
    assert DEFAULT.input_shape == (1, 48, 48) and DEFAULT.num_classes == 7
    assert DEFAULT.body_kinds == ("conv", "pool", "ir", "res")
    assert TINY.max_blocks < DEFAULT.max_blocks


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace('name = "tiny"\n', ""), "missing key 'name'"),
        (lambda t: t.replace("max_blocks = 4", 'max_blocks = "4"'), "'max_blocks' must be int"),
        (
            lambda t: t.replace("kernel = [3]\nchannels = [4, 8, 16]", "kernel = []\nchannels = [4, 8, 16]"),
            "[conv] kernel must be a non-empty list",
        ),
        (lambda t: t.replace("[pool]", "[pool]\nsize = [3]"), "[pool] unknown key(s) ['size']"),
        (lambda t: t + "\n[attention]\nheads = [2]\n", "unknown key(s) ['attention']"),
        (lambda t: t.replace("[conv]", "[conv"), "not valid TOML"),
        (lambda t: t.replace("units = [16, 32]", "units = [16, 3.5]"), "[dense] units has values of the wrong type"),
        (
            lambda t: t.replace('activation = ["relu", "hardswish"]', 'activation = ["relu", "gelu"]'),
            "[conv] activation has unknown value(s) ['gelu']; known: ['relu', 'relu6', 'hardswish']",
        ),
        (lambda t: t.replace('readout = ["gap", "flat"]', 'readout = [["gap", "flat"]]'), "readout must be"),
        (
            lambda t: t.replace("dropout = [0.0, 0.5]", "dropout = [0.33333, 0.33334]"),
            "[dense] dropout 0.33333: at most 4 decimals (a genome writes 0.3333)",
        ),
    ],
)
def test_broken_space_files_name_file_and_problem(tmp_path, edit, message):
    path = tmp_path / "broken.toml"
    path.write_text(edit(Path(TINY.source).read_text()))
    with pytest.raises(SpaceError) as exc:
        load_space(path)
    assert str(exc.value).startswith(str(path)) and message in str(exc.value)


def test_missing_space_file(tmp_path):
    with pytest.raises(SpaceError, match="search-space file not found"):
        load_space(tmp_path / "nope.toml")


def test_validate_names_block_and_problem():
    g = parse_genome("conv_k3_c32_s2_relu | pool_max | pool_max | pool_max | pool_max | pool_max | gap")
    assert problems(g, DEFAULT) == ["block 5: pool would reduce 1x1 below 1x1"]
    g = parse_genome("conv_k7_c33_s1_relu | gap | dense_u128_d0.5 | dense_u128_d0.5 | dense_u128_d0.5")
    found = problems(g, DEFAULT)
    assert "3 dense blocks; the space allows at most 2" in found
    assert "block 0: conv kernel 7 not in allowed [3, 5]" in found
    assert "block 0: conv channels 33 not in allowed [8, 16, 24, 32, 48, 64, 96, 128, 256]" in found
    with pytest.raises(GenomeError, match="needs exactly one readout"):
        validate(parse_genome("conv_k3_c32_s1_relu"), DEFAULT)
    with pytest.raises(GenomeError, match="flat gives 73728 features"):
        validate(parse_genome("conv_k3_c32_s1_relu | flat"), DEFAULT)
    with pytest.raises(GenomeError, match="block 3: conv after dense; order is body, readout, dense"):
        validate(parse_genome("conv_k3_c32_s1_relu | gap | dense_u64_d0 | conv_k3_c32_s1_relu"), DEFAULT)


_ANY_GENE = st.one_of(
    st.builds(
        Conv,
        st.integers(1, 9),
        st.integers(1, 600),
        st.integers(1, 4),
        st.sampled_from(["relu", "relu6", "hardswish"]),
        st.booleans(),
    ),
    st.builds(Pool, st.sampled_from(["max", "avg"])),
    st.builds(
        InvertedResidual,
        st.integers(1, 9),
        st.integers(1, 9),
        st.integers(1, 600),
        st.integers(1, 4),
        st.integers(1, 5),
        st.booleans(),
    ),
    st.builds(Readout, st.sampled_from(["gap", "flat"])),
    st.builds(Dense, st.integers(1, 5000), st.sampled_from([0.0, 0.1, 0.5, 0.9])),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_ANY_GENE, max_size=25), st.sampled_from([DEFAULT, TINY]))
def test_repair_makes_any_genome_valid(genes, space):
    fixed = repair(Genome(tuple(genes)), space)
    assert problems(fixed, space) == []
    assert repair(fixed, space) == fixed  # valid genomes are left alone


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([DEFAULT, TINY]))
def test_samples_are_valid(seed, space):
    assert is_valid(sample(space, random.Random(seed)), space)


@pytest.mark.parametrize("space", [DEFAULT, TINY], ids=["default", "tiny"])
def test_thousands_of_mutations_and_crossovers_stay_valid(space):
    rng = random.Random(1)
    pop = [sample(space, rng) for _ in range(20)]
    changed = 0
    for i in range(2000):
        a, b = rng.sample(pop, 2)
        if i % 2:
            children = crossover(a, b, space, rng, points=1 + i % 4 // 2)
        else:
            children = (mutate(a, space, rng),)
        for child in children:
            assert problems(child, space) == [], (a, b, child)
            changed += child.key not in (a.key, b.key)
        pop[rng.randrange(len(pop))] = children[0]
    assert changed > 1000  # the operators really move through the space


def test_operators_are_deterministic_given_the_rng():
    def run(seed):
        rng = random.Random(seed)
        g = sample(DEFAULT, rng)
        return [str(g := mutate(g, DEFAULT, rng)) for _ in range(50)]

    assert run(3) == run(3) and run(3) != run(4)


def test_a_genomes_choices_draw_it_again_so_optuna_can_be_seeded_with_it():
    space, rng = load_space("default"), random.Random(0)
    genomes = [b.genome for b in load_baselines().values()] + [sample(space, rng) for _ in range(50)]
    for genome in (g for g in genomes if repair(g, space) == g):
        named = choices(genome, space)
        assert draw(space, lambda name, options, named=named: named[name]) == genome


@pytest.mark.parametrize("max_blocks", [1, 2])
def test_a_space_whose_flat_readout_can_never_fit_is_one_line_before_a_run_is_made(tmp_path, max_blocks, capsys):
    from nas.cli import main

    text = Path(TINY.source).read_text().replace('readout = ["gap", "flat"]', 'readout = ["flat"]')
    text = text.replace("max_blocks = 4", f"max_blocks = {max_blocks}").replace(
        "max_flat_features = 1152", "max_flat_features = 100"
    )
    path = tmp_path / "narrow.toml"
    path.write_text(text)
    with pytest.raises(GenomeError, match="narrow.toml: cannot make a flat readout fit max_flat_features"):
        repair(parse_genome("conv_k3_c4_s1_relu_bn | flat"), load_space(path))  # it cycled, or indexed nothing
    assert main(["evolve", "--data", "synthetic:70", "--space", str(path), "--run-dir", str(tmp_path / "r")]) == 2
    assert "cannot make a flat readout fit" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_a_short_body_is_padded_with_the_smallest_block_whatever_order_the_space_lists_its_values(tmp_path):
    path = tmp_path / "descending.toml"
    path.write_text(Path(TINY.source).read_text().replace("channels = [4, 8, 16]", "channels = [16, 8, 4]"))
    assert str(repair(parse_genome("gap"), load_space(path))).startswith("conv_k3_c4_s1_")
