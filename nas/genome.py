"""The genome: an immutable sequence of block genes and its one canonical string.

A genome is written like timm's block strings, one gene per block, joined by " | ":

    conv_k3_c32_s1_relu_bn | pool_max | ir_k3_e4_c64_s2_r2_se | gap | dense_u128_d0.5

Unlike timm, every gene has exactly one spelling: tokens come in one fixed order, numbers are written
in their shortest form, flags (``bn``, ``se``) are present or absent, and anything else is an error.
So ``format_genome(parse_genome(s)) == s`` for every string ``parse_genome`` accepts, and
``parse_genome(format_genome(g)) == g`` for every genome. This module imports no torch: genomes are
cheap to create, compare, hash and send between processes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, fields, replace
from typing import ClassVar

from nas.errors import GenomeError

ACTIVATIONS = ("relu", "relu6", "hardswish")
POOL_KINDS = ("max", "avg")
READOUTS = ("gap", "flat")


@dataclass(frozen=True)
class Conv:
    """Plain convolution, 'same' padding; ``stride`` 2 halves the feature map (rounding up)."""

    kernel: int
    channels: int
    stride: int
    activation: str
    batch_norm: bool

    kind: ClassVar[str] = "conv"

    def tokens(self) -> list[str]:
        out = [f"k{self.kernel}", f"c{self.channels}", f"s{self.stride}", self.activation]
        return out + (["bn"] if self.batch_norm else [])


@dataclass(frozen=True)
class Pool:
    """2x2 pooling with stride 2 (halves the feature map, rounding down)."""

    op: str

    kind: ClassVar[str] = "pool"

    def tokens(self) -> list[str]:
        return [self.op]


@dataclass(frozen=True)
class InvertedResidual:
    """MobileNetV2 inverted residual: 1x1 expand, kxk depthwise, optional SE, 1x1 linear project.

    ``repeats`` stacks the block; only the first repeat uses ``stride`` (as in MobileNetV2).
    """

    kernel: int
    expansion: int
    channels: int
    stride: int
    repeats: int
    se: bool

    kind: ClassVar[str] = "ir"

    def tokens(self) -> list[str]:
        out = [f"k{self.kernel}", f"e{self.expansion}", f"c{self.channels}", f"s{self.stride}"]
        return out + [f"r{self.repeats}"] + (["se"] if self.se else [])


@dataclass(frozen=True)
class Readout:
    """Feature map -> vector: global average pooling (``gap``) or flattening (``flat``)."""

    op: str

    kind: ClassVar[str] = "readout"

    def tokens(self) -> list[str]:
        return []


@dataclass(frozen=True)
class Dense:
    """Fully connected layer with ReLU, then dropout; the 7-way classifier is always appended."""

    units: int
    dropout: float

    kind: ClassVar[str] = "dense"

    def tokens(self) -> list[str]:
        return [f"u{self.units}", f"d{_format_float(self.dropout)}"]


Gene = Conv | Pool | InvertedResidual | Readout | Dense
BODY_KINDS = ("conv", "pool", "ir")
SEPARATOR = " | "


@dataclass(frozen=True)
class Genome:
    """One network: body genes (conv/pool/ir), one readout, then dense genes."""

    genes: tuple[Gene, ...]

    def __str__(self) -> str:
        return format_genome(self)

    def __len__(self) -> int:
        return len(self.genes)

    @property
    def body(self) -> tuple[Gene, ...]:
        return tuple(g for g in self.genes if g.kind in BODY_KINDS)

    @property
    def head(self) -> tuple[Dense, ...]:
        return tuple(g for g in self.genes if isinstance(g, Dense))

    @property
    def readout(self) -> Readout | None:
        return next((g for g in self.genes if isinstance(g, Readout)), None)

    @property
    def key(self) -> str:
        """Canonical hash: equal for genomes that build the same network."""
        text = format_genome(canonical(self))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _format_float(x: float) -> str:
    text = f"{x:.4f}".rstrip("0").rstrip(".")
    return text or "0"


def format_gene(gene: Gene) -> str:
    if isinstance(gene, Readout):
        return gene.op
    if isinstance(gene, Pool):
        return f"pool_{gene.op}"
    return "_".join([gene.kind, *gene.tokens()])


def format_genome(genome: Genome) -> str:
    return SEPARATOR.join(format_gene(g) for g in genome.genes)


# One regular expression per gene kind: the fixed token order, nothing else.
_INT = r"(0|[1-9]\d*)"
_GRAMMAR: dict[str, re.Pattern[str]] = {
    "conv": re.compile(rf"conv_k{_INT}_c{_INT}_s{_INT}_(relu6|relu|hardswish)(_bn)?"),
    "pool": re.compile(r"pool_(max|avg)"),
    "ir": re.compile(rf"ir_k{_INT}_e{_INT}_c{_INT}_s{_INT}_r{_INT}(_se)?"),
    "readout": re.compile(r"(gap|flat)"),
    "dense": re.compile(rf"dense_u{_INT}_d(\d+(?:\.\d+)?)"),
}
_SPELLING = {
    "conv": "conv_k<kernel>_c<channels>_s<stride>_<relu|relu6|hardswish>[_bn]",
    "pool": "pool_<max|avg>",
    "ir": "ir_k<kernel>_e<expansion>_c<channels>_s<stride>_r<repeats>[_se]",
    "readout": "gap | flat",
    "dense": "dense_u<units>_d<dropout>",
}


def _gene_from_match(kind: str, m: re.Match[str]) -> Gene:
    g = m.groups()
    if kind == "conv":
        return Conv(int(g[0]), int(g[1]), int(g[2]), g[3], g[4] is not None)
    if kind == "pool":
        return Pool(g[0])
    if kind == "ir":
        return InvertedResidual(int(g[0]), int(g[1]), int(g[2]), int(g[3]), int(g[4]), g[5] is not None)
    if kind == "readout":
        return Readout(g[0])
    return Dense(int(g[0]), float(g[1]))


def parse_gene(text: str, index: int = 0) -> Gene:
    """Parse one gene; the error names the block and the spelling that was expected."""
    name = text.strip()
    kind = "readout" if name in READOUTS else name.split("_", 1)[0]
    if kind not in _GRAMMAR:
        known = ", ".join(k for k in _GRAMMAR if k != "readout")
        raise GenomeError(f"block {index}: unknown block type in {name!r} (known: {known}, gap, flat)")
    m = _GRAMMAR[kind].fullmatch(name)
    if m is None:
        raise GenomeError(f"block {index}: cannot parse {name!r}; expected {_SPELLING[kind]}")
    gene = _gene_from_match(kind, m)
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


def canonical(genome: Genome) -> Genome:
    """Merge runs of identical stride-1 inverted residuals into their first block's ``repeats``.

    ``ir_..._s2_r2`` and ``ir_..._s2_r1 | ir_..._s1_r1`` build the same network, so they must share a
    hash: the caches and the Pareto archive would otherwise count one network twice.
    """
    merged: list[Gene] = []
    for gene in genome.genes:
        prev = merged[-1] if merged else None
        if (
            isinstance(gene, InvertedResidual)
            and isinstance(prev, InvertedResidual)
            and gene.stride == 1
            and (gene.kernel, gene.expansion, gene.channels, gene.se)
            == (prev.kernel, prev.expansion, prev.channels, prev.se)
        ):
            merged[-1] = replace(prev, repeats=prev.repeats + gene.repeats)
        else:
            merged.append(gene)
    return Genome(tuple(merged))


def gene_output(gene: Gene, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Output (C, H, W) of a body gene: 'same' convs round up, 2x2 pools round down."""
    c, h, w = shape
    if isinstance(gene, Pool):
        return c, h // 2, w // 2
    s = gene.stride
    return gene.channels, (h - 1) // s + 1, (w - 1) // s + 1


def feature_shapes(genome: Genome, input_shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """The (C, H, W) after each body gene; the builder's shapes must agree (a test says so)."""
    shapes, shape = [], tuple(input_shape)
    for gene in genome.body:
        shape = gene_output(gene, shape)
        shapes.append(shape)
    return shapes


def readout_features(genome: Genome, input_shape: tuple[int, int, int]) -> int:
    shapes = feature_shapes(genome, input_shape)
    c, h, w = shapes[-1] if shapes else input_shape
    readout = genome.readout
    return c * h * w if readout is not None and readout.op == "flat" else c


def gene_fields(gene: Gene) -> list[str]:
    """The mutable parameters of a gene, in token order."""
    return [f.name for f in fields(gene)]
