"""The genome: an immutable sequence of block genes and its one canonical string.

A genome is written like timm's block strings, one gene per block, joined by " | ":

    conv_k3_c32_s1_relu_bn | pool_max | ir_k3_e4_c64_s2_r2_se | gap | dense_u128_d0.5

Unlike timm, every gene has exactly one spelling: tokens come in one fixed order, numbers are written
in their shortest form, flags (``bn``, ``se``) are present or absent, and anything else is an error.
So ``format_genome(parse_genome(s)) == s`` for every string ``parse_genome`` accepts, and
``parse_genome(format_genome(g)) == g`` for every genome. The spelling of each gene comes from its
declaration in ``nas.genome.blocks``. This module imports no torch: genomes are cheap to create, compare,
hash and send between processes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, fields, replace

from nas.errors import GenomeError
from nas.genome.blocks import (
    ACTIVATIONS,
    BLOCKS,
    SECTIONS,
    Block,
    Conv,
    Dense,
    InvertedResidual,
    Pool,
    Readout,
    Shape,
    out_of_range,
    token_fields,
)

__all__ = [
    "ACTIVATIONS",
    "BODY_KINDS",
    "Conv",
    "Dense",
    "Gene",
    "Genome",
    "InvertedResidual",
    "Pool",
    "Readout",
    "canonical",
    "feature_shapes",
    "format_genome",
    "parse_genome",
]

Gene = Block
BODY_KINDS = tuple(kind for kind, cls in BLOCKS.items() if cls.section == "body")
SEPARATOR = " | "


@dataclass(frozen=True)
class Genome:
    """One network: body genes, one readout, then head (dense) genes."""

    genes: tuple[Gene, ...]

    def __str__(self) -> str:
        return format_genome(self)

    def __len__(self) -> int:
        return len(self.genes)

    @property
    def body(self) -> tuple[Gene, ...]:
        return tuple(g for g in self.genes if g.section == "body")

    @property
    def head(self) -> tuple[Gene, ...]:
        return tuple(g for g in self.genes if g.section == "head")

    @property
    def readout(self) -> Readout | None:
        return next((g for g in self.genes if g.section == "readout"), None)

    @property
    def key(self) -> str:
        """Canonical hash: equal for genomes that build the same network."""
        text = format_genome(canonical(self))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- spelling, derived from the declarations


def format_number(x: int | float) -> str:
    """How a genome writes a number: an int as is, a float with at most 4 decimals."""
    if isinstance(x, int):
        return str(x)
    text = f"{x:.4f}".rstrip("0").rstrip(".")
    return text or "0"


def _token(f, value) -> str | None:
    kind = f.metadata["token"]
    if kind == "number":
        return f.metadata["prefix"] + format_number(value)
    if kind == "word":
        return value
    return f.metadata["name"] if value else None


def format_gene(gene: Gene) -> str:
    tokens = [t for f in token_fields(type(gene)) if (t := _token(f, getattr(gene, f.name))) is not None]
    return "_".join(tokens if gene.bare else [gene.kind, *tokens])


def format_genome(genome: Genome) -> str:
    return SEPARATOR.join(format_gene(g) for g in genome.genes)


_NUMBER = {"int": r"(0|[1-9]\d*)", "float": r"(\d+(?:\.\d+)?)"}


def _field_pattern(f) -> str:
    kind = f.metadata["token"]
    if kind == "number":
        return "_" + re.escape(f.metadata["prefix"]) + _NUMBER[f.type]
    if kind == "word":
        return "_(" + "|".join(sorted(map(re.escape, f.metadata["choices"]), key=len, reverse=True)) + ")"
    return "(_" + re.escape(f.metadata["name"]) + ")?"


def _field_spelling(f) -> str:
    kind = f.metadata["token"]
    if kind == "number":
        return f"_{f.metadata['prefix']}<{f.name}>"
    if kind == "word":
        return "_<" + "|".join(f.metadata["choices"]) + ">"
    return f"[_{f.metadata['name']}]"


def _grammar(cls: type[Block]) -> tuple[re.Pattern[str], str]:
    """The one regular expression of a block kind, and its spelling for error messages."""
    fs = token_fields(cls)
    if cls.bare:
        (f,) = fs
        return re.compile("(" + "|".join(map(re.escape, f.metadata["choices"])) + ")"), " | ".join(
            f.metadata["choices"]
        )
    pattern = re.escape(cls.kind) + "".join(_field_pattern(f) for f in fs)
    return re.compile(pattern), cls.kind + "".join(_field_spelling(f) for f in fs)


_GRAMMAR = {kind: _grammar(cls) for kind, cls in BLOCKS.items()}
_BARE_WORDS = {w: kind for kind, cls in BLOCKS.items() if cls.bare for w in token_fields(cls)[0].metadata["choices"]}


def _gene_from_match(cls: type[Block], m: re.Match[str]) -> Gene:
    values = {}
    for f, text in zip(token_fields(cls), m.groups()):
        kind = f.metadata["token"]
        values[f.name] = text is not None if kind == "flag" else text if kind == "word" else _NUMBER_TYPE[f.type](text)
    return cls(**values)


_NUMBER_TYPE = {"int": int, "float": float}


def parse_gene(text: str, index: int = 0) -> Gene:
    """Parse one gene; the error names the block and the spelling that was expected."""
    name = text.strip()
    kind = _BARE_WORDS.get(name, name.split("_", 1)[0])
    if kind not in _GRAMMAR:
        known = [k for k, cls in BLOCKS.items() if not cls.bare] + list(_BARE_WORDS)
        raise GenomeError(f"block {index}: unknown block type in {name!r} (known: {', '.join(known)})")
    pattern, spelling = _GRAMMAR[kind]
    m = pattern.fullmatch(name)
    if m is None:
        raise GenomeError(f"block {index}: cannot parse {name!r}; expected {spelling}")
    gene = _gene_from_match(BLOCKS[kind], m)
    for f in token_fields(BLOCKS[kind]):
        why = out_of_range(f, getattr(gene, f.name))
        if why:
            raise GenomeError(f"block {index}: {name!r}: {kind} {why}")
    if format_gene(gene) != name:
        raise GenomeError(f"block {index}: {name!r} is not canonical; write {format_gene(gene)!r}")
    return gene


def parse_genome(text: str) -> Genome:
    """Parse a genome string; raises GenomeError (one line) on anything that is not canonical."""
    if not isinstance(text, str) or not text.strip():
        raise GenomeError("empty genome string")
    parts = text.strip().split("|")
    genome = Genome(tuple(parse_gene(p, i) for i, p in enumerate(parts)))
    if format_genome(genome) != text.strip():
        raise GenomeError(f"genome {text.strip()!r} is not canonical; write {format_genome(genome)!r}")
    return genome


# ---------------------------------------------------------------- identity and shapes


def _stackable(gene: Gene) -> bool:
    return {"stride", "repeats"} <= {f.name for f in fields(gene)}


def canonical(genome: Genome) -> Genome:
    """Merge runs of identical stride-1 repeated blocks (``ir``, ...) into their first block's ``repeats``.

    ``ir_..._s2_r2`` and ``ir_..._s2_r1 | ir_..._s1_r1`` build the same network, so they must share a
    hash: the caches and the Pareto archive would otherwise count one network twice.
    """

    def shape_of(g: Gene) -> tuple:
        return tuple(getattr(g, f.name) for f in fields(g) if f.name not in ("stride", "repeats"))

    merged: list[Gene] = []
    for gene in genome.genes:
        prev = merged[-1] if merged else None
        if (
            prev is not None
            and type(gene) is type(prev)
            and _stackable(gene)
            and gene.stride == 1
            and shape_of(gene) == shape_of(prev)
        ):
            merged[-1] = replace(prev, repeats=prev.repeats + gene.repeats)
        else:
            merged.append(gene)
    return Genome(tuple(merged))


def feature_shapes(genome: Genome, input_shape: Shape) -> list[Shape]:
    """The (C, H, W) after each body gene; the builder's shapes must agree (a test says so)."""
    shapes, shape = [], tuple(input_shape)
    for gene in genome.body:
        shape = gene.output_shape(shape)
        shapes.append(shape)
    return shapes


def readout_features(genome: Genome, input_shape: Shape) -> int:
    shapes = feature_shapes(genome, input_shape)
    return (genome.readout or Readout("gap")).output_shape(shapes[-1] if shapes else tuple(input_shape))[0]


def section_rank(gene: Gene) -> int:
    """Position of the gene's section in a genome: body, readout, head."""
    return SECTIONS.index(gene.section)
