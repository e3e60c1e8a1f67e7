"""The search space: which genes may appear, and the legal moves between genomes.

A space file (TOML) lists, per block kind, the allowed values of each gene field; the field names are
the gene dataclasses' own, so sampling, mutation and repair need no per-kind code. ``validate`` says
exactly what is wrong with a genome; ``repair`` turns any genome into a valid one, so the variation
operators can be simple and a search never stops on a bad child.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from nas.errors import GenomeError, SpaceError
from nas.genome.blocks import BLOCKS, out_of_range
from nas.genome.grammar import (
    BODY_KINDS,
    Gene,
    Genome,
    Pool,
    Readout,
    feature_shapes,
    format_number,
    parse_genome,
    readout_features,
    section_rank,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# the block kinds a space file lists values for (a readout has its own top-level key)
GENE_CLASSES: dict[str, type] = {kind: cls for kind, cls in BLOCKS.items() if not cls.bare}
_FIELD_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}
# body blocks that can keep the map size (they have a stride): repair pads short bodies with one of them
_PADDING_KINDS = tuple(k for k in BODY_KINDS if "stride" in {f.name for f in fields(GENE_CLASSES[k])})


# the largest network a space may describe: far beyond any FER2013 network (the default space: 8 blocks, 2
# dense layers), yet small enough that sampling and building one take moments, not minutes or all memory
MAX_BLOCKS, MAX_DENSE = 64, 8
MAX_PARAMS = 100_000_000  # 40x the largest hand-made network here (VGG-style, 2.5M): a typo, not a FER network


@dataclass(frozen=True)
class SearchSpace:
    """A loaded, validated space file. ``options[kind][field]`` is the tuple of allowed values."""

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    min_blocks: int
    max_blocks: int
    max_dense: int
    readout: tuple[str, ...]
    max_flat_features: int
    options: dict[str, dict[str, tuple]]
    source: str = ""
    # the space's budgets, each a run's constraint unless the run sets its own (nas.evolve.problem)
    max_mflops: float | None = None
    max_latency_ms: float | None = None  # predicted by the machine's latency table

    @property
    def body_kinds(self) -> tuple[str, ...]:
        return tuple(k for k in BODY_KINDS if k in self.options)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``config.json``: enough to rebuild the space."""
        top = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("options", "source")}
        for budget in BUDGET_KEYS:
            if top[budget] is None:
                del top[budget]
        top["readout"] = list(self.readout)
        top["input_shape"] = list(self.input_shape)
        return top | {k: {f: list(v) for f, v in opts.items()} for k, opts in self.options.items()}


BUDGET_KEYS = ("max_mflops", "max_latency_ms")  # optional top-level keys: a space's budgets
_TOP_KEYS = {
    "name": str,
    "input_shape": list,
    "num_classes": int,
    "min_blocks": int,
    "max_blocks": int,
    "max_dense": int,
    "readout": list,
    "max_flat_features": int,
}


def space_from_dict(raw: dict[str, Any], source: str = "<dict>") -> SearchSpace:
    """Check every key and value; the error names the file and the offending key."""

    def fail(msg: str) -> SpaceError:
        return SpaceError(f"{source}: {msg}")

    readout = _check_top(raw, fail)
    options = {kind: _section(kind, cls, raw[kind], fail) for kind, cls in GENE_CLASSES.items() if kind in raw}
    budgets = {key: raw.get(key) for key in BUDGET_KEYS}
    for key, value in budgets.items():
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0):
            raise fail(f"{key!r} must be a positive number, got {value!r}")
    if not any(k in options for k in _PADDING_KINDS):
        raise fail("the space needs one of the sections " + ", ".join(f"[{k}]" for k in _PADDING_KINDS))
    if raw["max_dense"] > 0 and "dense" not in options:
        raise fail("max_dense > 0 needs a [dense] section")
    return SearchSpace(
        name=raw["name"],
        input_shape=tuple(raw["input_shape"]),
        num_classes=raw["num_classes"],
        min_blocks=raw["min_blocks"],
        max_blocks=raw["max_blocks"],
        max_dense=raw["max_dense"],
        readout=readout,
        max_flat_features=raw["max_flat_features"],
        options=options,
        source=source,
        **budgets,
    )


def _check_top(raw: dict[str, Any], fail) -> tuple[str, ...]:
    """The space's own keys, each of its type and range; the readouts it allows."""
    for key, typ in _TOP_KEYS.items():
        if key not in raw:
            raise fail(f"missing key {key!r}")
        if not isinstance(raw[key], typ) or isinstance(raw[key], bool):
            raise fail(f"{key!r} must be {typ.__name__}, got {raw[key]!r}")
    unknown = set(raw) - set(_TOP_KEYS) - set(GENE_CLASSES) - set(BUDGET_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {sorted(unknown)}; block sections are {sorted(GENE_CLASSES)}")
    shape = raw["input_shape"]
    if len(shape) != 3 or not all(isinstance(v, int) and v > 0 for v in shape):
        raise fail(f"input_shape must be three positive integers [C, H, W], got {shape!r}")
    if not 1 <= raw["min_blocks"] <= raw["max_blocks"] <= MAX_BLOCKS:
        raise fail(f"need 1 <= min_blocks <= max_blocks <= {MAX_BLOCKS}, got {raw['min_blocks']}, {raw['max_blocks']}")
    if not 0 <= raw["max_dense"] <= MAX_DENSE or raw["num_classes"] < 2 or raw["max_flat_features"] < 1:
        raise fail(f"need 0 <= max_dense <= {MAX_DENSE}, num_classes >= 2 and max_flat_features >= 1")
    readout, readouts = tuple(raw["readout"]), list(fields(Readout)[0].metadata["choices"])
    if not readout or not all(isinstance(r, str) for r in readout) or not set(readout) <= set(readouts):
        raise fail(f"readout must be a non-empty subset of {readouts}, got {list(readout)!r}")
    return readout


def _section(kind: str, cls: type, section: Any, fail) -> dict[str, tuple]:
    """A block section: for each of the block's fields, its allowed values, each of the field's type, within
    the field's range and among its choices, in the file's order without repeats."""
    if not isinstance(section, dict):
        raise fail(f"[{kind}] must be a table")
    names = [f.name for f in fields(cls)]
    extra = set(section) - set(names)
    if extra:
        raise fail(f"[{kind}] unknown key(s) {sorted(extra)}; allowed: {names}")
    options = {}
    for f in fields(cls):
        values = section.get(f.name)
        if not isinstance(values, list) or not values:
            raise fail(f"[{kind}] {f.name} must be a non-empty list")
        ok = _FIELD_TYPES[f.type]
        bad = [v for v in values if not isinstance(v, ok) or (bool not in ok and isinstance(v, bool))]
        if bad:
            raise fail(f"[{kind}] {f.name} has values of the wrong type: {bad!r}")
        illegal = [why for v in values if (why := out_of_range(f, v))]
        if illegal:
            raise fail(f"[{kind}] {illegal[0]}")
        unspellable = [v for v in values if isinstance(v, float) and float(format_number(v)) != v]
        if unspellable:  # a genome writes 4 decimals: two such values would be one network's key
            raise fail(f"[{kind}] {f.name} {unspellable[0]!r}: at most 4 decimals (a genome writes "
                       f"{format_number(unspellable[0])})")  # fmt: skip
        choices = f.metadata.get("choices")
        if choices and not set(values) <= set(choices):
            unknown = [v for v in values if v not in choices]
            raise fail(f"[{kind}] {f.name} has unknown value(s) {unknown!r}; known: {list(choices)}")
        options[f.name] = tuple(sorted(set(values), key=values.index))
    return options


def load_space(path: str | Path) -> SearchSpace:
    """Load a space file; a bare name such as ``tiny`` means ``search_spaces/tiny.toml``."""
    path = resolve_space_path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpaceError(f"{path}: search-space file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpaceError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise SpaceError(f"{path}: not a text file (TOML is UTF-8 text)") from None
    except OSError as exc:
        raise SpaceError(f"{path}: cannot read the search-space file ({exc.strerror})") from None
    return space_from_dict(raw, source=str(path))


def resolve_space_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix != ".toml" and not path.exists():
        return SPACES_DIR / f"{path}.toml"
    return path


def _spaces_dir() -> Path:
    """The bundled spaces: ``search_spaces/`` beside the package in a checkout, ``nas/search_spaces/`` in a
    wheel (package data)."""
    here = Path(__file__).resolve().parents[1]  # the package
    checkout = here.parent / "search_spaces"
    return checkout if (checkout / "default.toml").exists() else here / "search_spaces"


SPACES_DIR = _spaces_dir()


@dataclass(frozen=True)
class Baseline:
    name: str
    genome: Genome
    description: str
    params: int  # exact count of the built network (a regression check)
    literature_params: int | None = None
    tolerance: float | None = None


def load_baselines(path: str | Path = SPACES_DIR / "baselines.toml") -> dict[str, Baseline]:
    """The hand-made networks we compare against, as genomes (``search_spaces/baselines.toml``)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, tomllib.TOMLDecodeError) as exc:
        raise SpaceError(f"{path}: cannot read baselines ({exc})") from None
    out = {}
    for name, entry in raw.items():
        try:
            out[name] = Baseline(name=name, **{**entry, "genome": parse_genome(entry["genome"])})
        except (TypeError, KeyError, GenomeError) as exc:
            raise SpaceError(f"{path}: baseline [{name}]: {exc}") from None
    return out


SEED_CHOICES = ("baselines", "none")  # or a file of genomes


def seed_networks(spec: str) -> dict[str, str]:
    """The networks a search's first generation starts from, by name: the hand-made ``baselines``, ``none``,
    or a text file of genomes, one a line (blank lines and ``#`` comments skipped), named ``<file>:<line>``."""
    if spec == "none":
        return {}
    if spec == "baselines":
        return {name: str(b.genome) for name, b in load_baselines().items()}
    path = Path(spec)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        choices = " or ".join(SEED_CHOICES)
        raise SpaceError(f"--seed-networks: not {choices}, and {path} cannot be read ({exc})") from None
    seeds = {}
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if text:
            try:
                seeds[f"{path.name}:{number}"] = str(parse_genome(text))
            except GenomeError as exc:
                raise SpaceError(f"{path}:{number}: not a genome ({exc})") from None
    if not seeds:
        raise SpaceError(f"{path}: no genome in it (one a line)")
    return seeds


# ---------------------------------------------------------------- shapes and validation


def structure_problems(genome: Genome, input_shape: tuple[int, ...]) -> list[str]:
    """What makes ``genome`` no network at all, in any space: its order, its readout, a map shrunk below 1x1."""
    out: list[str] = []
    sections = [g.kind for g in genome.genes]
    for i in range(1, len(sections)):
        if section_rank(genome.genes[i]) < section_rank(genome.genes[i - 1]):
            out.append(f"block {i}: {sections[i]} after {sections[i - 1]}; order is body, readout, dense")
            break
    n_readout = sections.count("readout")
    if n_readout != 1:
        out.append(f"needs exactly one readout (gap or flat) after the body, found {n_readout}")
    shape = tuple(input_shape)
    for i, gene in enumerate(genome.genes):
        if gene.section != "body":
            continue
        new = gene.output_shape(shape)
        if min(new[1:]) < 1:
            out.append(f"block {i}: {gene.kind} would reduce {shape[1]}x{shape[2]} below 1x1")
            break
        shape = new
    return out


def problems(genome: Genome, space: SearchSpace) -> list[str]:
    """Everything wrong with ``genome`` in ``space``, each naming its block; empty when valid."""
    out = structure_problems(genome, space.input_shape)
    n_body, n_dense = len(genome.body), len(genome.head)
    if not space.min_blocks <= n_body <= space.max_blocks:
        out.append(f"{n_body} body blocks; the space allows {space.min_blocks} to {space.max_blocks}")
    if n_dense > space.max_dense:
        out.append(f"{n_dense} dense blocks; the space allows at most {space.max_dense}")
    for i, gene in enumerate(genome.genes):
        if isinstance(gene, Readout):
            if gene.op not in space.readout:
                out.append(f"block {i}: readout {gene.op} not in {list(space.readout)}")
            continue
        if gene.kind not in space.options:
            out.append(f"block {i}: block type {gene.kind} is not in this space")
            continue
        for name, allowed in space.options[gene.kind].items():
            value = getattr(gene, name)
            if value not in allowed:
                out.append(f"block {i}: {gene.kind} {name} {value} not in allowed {list(allowed)}")
    collapsed = any(min(s[1:]) < 1 for s in feature_shapes(genome, space.input_shape))
    if not collapsed and genome.readout is not None and genome.readout.op == "flat":
        n = readout_features(genome, space.input_shape)
        if n > space.max_flat_features:
            out.append(f"flat gives {n} features, more than max_flat_features {space.max_flat_features}")
    return out


def checked_genome(text: str, where: str, input_shape: tuple[int, ...] = (1, 48, 48)) -> Genome:
    """A genome given outside a search (``--genome``, a champion file): parsed and buildable, or one line
    that says ``where`` it came from and what is wrong; no space applies, only the bounds on every space
    (``MAX_BLOCKS`` body blocks, ``MAX_DENSE`` dense layers, ``MAX_PARAMS`` parameters; each field's legal
    range)."""
    try:
        genome = parse_genome(text)
    except GenomeError as exc:
        raise GenomeError(f"{where}: {exc}") from None
    if len(genome.body) > MAX_BLOCKS or len(genome.head) > MAX_DENSE:
        raise GenomeError(
            f"{where}: {len(genome.body)} body blocks and {len(genome.head)} dense layers; "
            f"at most {MAX_BLOCKS} and {MAX_DENSE}"
        )
    found = structure_problems(genome, input_shape)
    if found:
        raise GenomeError(f"{where}: {'; '.join(found)}")
    params = _params_unbuilt(genome, input_shape)
    if params > MAX_PARAMS:
        raise GenomeError(f"{where}: {params:,} parameters, more than the {MAX_PARAMS:,} any network here may have")
    return genome


def describe_baselines() -> list[dict]:
    """The hand-made networks with their measured size and FLOPs (``nas baselines``)."""
    from nas.genome.build import build, count_flops, count_params

    out = []
    for name, b in load_baselines().items():
        model = build(b.genome)
        out.append(
            {"name": name, "genome": str(b.genome), "params": count_params(model), "flops": count_flops(model),
             "literature_params": b.literature_params}
        )  # fmt: skip
    return out


def _params_unbuilt(genome: Genome, input_shape: tuple[int, ...]) -> int:
    """The network's parameters, counted on torch's meta device: no memory is taken, however large."""
    import torch

    from nas.genome.build import build, count_params

    with torch.device("meta"):
        return count_params(build(genome, tuple(input_shape), 7))


def validate(genome: Genome, space: SearchSpace) -> None:
    """Raise GenomeError listing every problem; return quietly when the genome is valid."""
    found = problems(genome, space)
    if found:
        raise GenomeError("; ".join(found))


def is_valid(genome: Genome, space: SearchSpace) -> bool:
    return not problems(genome, space)


# ---------------------------------------------------------------- repair


def _snap(value: Any, allowed: tuple) -> Any:
    if value in allowed:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        numeric = [a for a in allowed if isinstance(a, (int, float))]
        if numeric:
            return min(numeric, key=lambda a: (abs(a - value), a))
    return allowed[0]


def _snap_gene(gene: Gene, space: SearchSpace) -> Gene:
    opts = space.options[gene.kind]
    return replace(gene, **{k: _snap(getattr(gene, k), v) for k, v in opts.items()})


def _default_gene(space: SearchSpace) -> Gene:
    """The smallest legal block that keeps the feature map size: used to pad short bodies."""
    kind = next(k for k in _PADDING_KINDS if k in space.options)
    opts = space.options[kind]
    numeric = {k for k, v in opts.items() if all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)}
    values = {k: (min(v) if k in numeric else v[0]) for k, v in opts.items()}  # the smallest, in any order listed
    return GENE_CLASSES[kind](**values)


def repair(genome: Genome, space: SearchSpace) -> Genome:
    """Deterministically turn any genome into a valid one in ``space``.

    Fields snap to the nearest allowed value, genes move into body/readout/dense order, surplus
    blocks are cut, reductions below 1x1 become stride 1 or are dropped, short bodies are padded.
    """
    body = [_snap_gene(g, space) for g in genome.body if g.kind in space.options]
    head = [_snap_gene(g, space) for g in genome.head if g.kind in space.options]
    readout = genome.readout if genome.readout and genome.readout.op in space.readout else None
    readout = readout or Readout(space.readout[0])
    body, head = body[: space.max_blocks], head[: space.max_dense]

    fitted, shape = [], space.input_shape
    for gene in body:
        new = gene.output_shape(shape)
        if min(new[1:]) < 1:
            if 1 not in space.options[gene.kind].get("stride", ()):
                continue
            gene = replace(gene, stride=1)
            new = gene.output_shape(shape)
        fitted.append(gene)
        shape = new
    while len(fitted) < space.min_blocks:
        fitted.append(_default_gene(space))

    result = Genome((*fitted, readout, *head))
    if readout.op == "flat" and readout_features(result, space.input_shape) > space.max_flat_features:
        result = _shrink_flat(result, space)
    return result


def _shrink_flat(genome: Genome, space: SearchSpace) -> Genome:
    """Make a too-wide flatten legal: switch to global pooling, or else pool the map down."""
    if "gap" in space.readout:
        return Genome((*genome.body, Readout("gap"), *genome.head))
    body, cannot = list(genome.body), GenomeError(f"{space.source}: cannot make a flat readout fit max_flat_features")
    while readout_features(Genome((*body, Readout("flat"))), space.input_shape) > space.max_flat_features:
        shape = feature_shapes(Genome(tuple(body)), space.input_shape)[-1] if body else space.input_shape
        if "pool" not in space.options or min(shape[1:]) < 2:
            raise cannot
        if len(body) >= space.max_blocks:  # make room: drop the first block that is no pool (pools stay)
            other = next((i for i, g in enumerate(body) if not isinstance(g, Pool)), None)
            if other is None:
                raise cannot
            body.pop(other)
            continue
        body.append(Pool(space.options["pool"]["op"][0]))
    return Genome((*body, Readout("flat"), *genome.head))


# ---------------------------------------------------------------- sampling and variation


Chooser = Callable[[str, Sequence[Any]], Any]


def _chosen_gene(kind: str, space: SearchSpace, choose: Chooser, prefix: str) -> Gene:
    """A gene of ``kind`` whose every field is chosen among the allowed values, named ``<prefix>_<field>``."""
    return GENE_CLASSES[kind](**{f: choose(f"{prefix}_{f}", v) for f, v in space.options[kind].items()})


def _body_prefix(i: int, kind: str) -> str:
    """The choice names of body block ``i`` of ``kind`` (``draw`` and ``choices``)."""
    return f"b{i}_{kind}"


def _dense_prefix(i: int) -> str:
    return f"d{i}"


def _random_gene(kind: str, space: SearchSpace, rng: random.Random) -> Gene:
    return _chosen_gene(kind, space, lambda _name, options: rng.choice(options), kind)


def draw(space: SearchSpace, choose: Chooser) -> Genome:
    """A valid genome from a sequence of named categorical choices, then repaired.

    ``choose(name, options)`` returns one of ``options``; a random generator gives uniform sampling, an
    Optuna trial's ``suggest_categorical`` gives a define-by-run encoding of the same space. Names are
    stable per position and kind (``b3_ir_expansion``), so a choice means the same in every genome.
    """
    n_body = choose("blocks", tuple(range(space.min_blocks, space.max_blocks + 1)))
    body = []
    for i in range(n_body):
        kind = choose(f"b{i}", space.body_kinds)
        body.append(_chosen_gene(kind, space, choose, _body_prefix(i, kind)))
    n_dense = choose("dense", tuple(range(space.max_dense + 1))) if "dense" in space.options else 0
    head = [_chosen_gene("dense", space, choose, _dense_prefix(i)) for i in range(n_dense)]
    readout = Readout(choose("readout", space.readout))
    return repair(Genome((*body, readout, *head)), space)


def choices(genome: Genome, space: SearchSpace) -> dict[str, Any]:
    """The named choices with which ``draw`` gives ``genome`` (a genome of ``space`` as ``repair`` leaves
    it): its encoding for an Optuna trial."""
    named: dict[str, Any] = {"blocks": len(genome.body), "dense": len(genome.head), "readout": genome.readout.op}
    for i, gene in enumerate(genome.body):
        named[f"b{i}"] = gene.kind
        named |= {f"{_body_prefix(i, gene.kind)}_{f}": getattr(gene, f) for f in space.options[gene.kind]}
    for i, gene in enumerate(genome.head):
        named |= {f"{_dense_prefix(i)}_{f}": getattr(gene, f) for f in space.options["dense"]}
    return named


def sample(space: SearchSpace, rng: random.Random) -> Genome:
    """A random valid genome: uniform block count, kinds and fields, then repaired."""
    return draw(space, lambda _name, options: rng.choice(options))


def _add_block(g: Genome, space: SearchSpace, rng: random.Random) -> Genome:
    body, head = list(g.body), list(g.head)
    if "dense" in space.options and rng.random() < 0.2 and len(head) < space.max_dense:
        head.insert(rng.randint(0, len(head)), _random_gene("dense", space, rng))
    elif len(body) < space.max_blocks:
        body.insert(rng.randint(0, len(body)), _random_gene(rng.choice(space.body_kinds), space, rng))
    return Genome((*body, g.readout, *head))


def _remove_block(g: Genome, space: SearchSpace, rng: random.Random) -> Genome:
    body, head = list(g.body), list(g.head)
    candidates = [("b", i) for i in range(len(body))] * (len(body) > space.min_blocks)
    candidates += [("h", i) for i in range(len(head))]
    if candidates:
        where, i = rng.choice(candidates)
        (body if where == "b" else head).pop(i)
    return Genome((*body, g.readout, *head))


def _change_param(g: Genome, space: SearchSpace, rng: random.Random) -> Genome:
    genes = list(g.genes)
    i = rng.randrange(len(genes))
    gene = genes[i]
    if isinstance(gene, Readout):
        choices = [r for r in space.readout if r != gene.op]
        genes[i] = Readout(rng.choice(choices)) if choices else gene
        return Genome(tuple(genes))
    opts = space.options.get(gene.kind, {})
    names = [n for n, allowed in opts.items() if len(allowed) > 1]
    if names:
        name = rng.choice(names)
        choices = [v for v in opts[name] if v != getattr(gene, name)]
        genes[i] = replace(gene, **{name: rng.choice(choices)})
    return Genome(tuple(genes))


def _swap_adjacent(g: Genome, space: SearchSpace, rng: random.Random) -> Genome:
    body = list(g.body)
    if len(body) >= 2:
        i = rng.randrange(len(body) - 1)
        body[i], body[i + 1] = body[i + 1], body[i]
    return Genome((*body, g.readout, *g.head))


MUTATIONS = {
    "add": _add_block,
    "remove": _remove_block,
    "change": _change_param,
    "swap": _swap_adjacent,
}


def mutate(
    genome: Genome,
    space: SearchSpace,
    rng: random.Random,
    weights: dict[str, float] | None = None,
    tries: int = 10,
) -> Genome:
    """Apply one mutation picked by ``weights``; retried until the repaired child differs."""
    weights = weights or {name: 1.0 for name in MUTATIONS}
    names = [n for n in MUTATIONS if weights.get(n, 0) > 0]
    child = genome
    for _ in range(tries):
        op = rng.choices(names, weights=[weights[n] for n in names])[0]
        child = repair(MUTATIONS[op](genome, space, rng), space)
        if child.key != genome.key:
            return child
    return child


def crossover(a: Genome, b: Genome, space: SearchSpace, rng: random.Random, points: int = 1) -> tuple[Genome, Genome]:
    """One- or two-point crossover of the body sequences; each child keeps its tail parent's head.

    Cut points are drawn independently in each parent, so children can be longer or shorter than
    either parent and depth itself evolves.
    """
    ab, bb = list(a.body), list(b.body)
    if points == 1:
        i, j = rng.randint(0, len(ab)), rng.randint(0, len(bb))
        c1 = (*ab[:i], *bb[j:], b.readout, *b.head)
        c2 = (*bb[:j], *ab[i:], a.readout, *a.head)
    elif points == 2:
        i1, i2 = sorted(rng.randint(0, len(ab)) for _ in range(2))
        j1, j2 = sorted(rng.randint(0, len(bb)) for _ in range(2))
        c1 = (*ab[:i1], *bb[j1:j2], *ab[i2:], a.readout, *a.head)
        c2 = (*bb[:j1], *ab[i1:i2], *bb[j2:], b.readout, *b.head)
    else:
        raise ValueError(f"crossover points must be 1 or 2, got {points}")
    return repair(Genome(c1), space), repair(Genome(c2), space)
