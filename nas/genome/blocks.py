"""Every block kind a genome may use, each declared once: its fields and their tokens, its shape rule, its module.

A declaration is a frozen dataclass registered with ``@register``. Its fields, in order, are the gene's
tokens; each field says how it is spelled (``number("k")`` -> ``k3``, ``word(...)`` -> ``relu``,
``flag("bn")`` -> ``bn`` or nothing). Everything else is derived from these declarations: the grammar
and its error messages (``nas.genome.grammar``), the sections a search-space file may have and the values they
may list (``nas.genome.space``), and the network (``nas.genome.build`` calls ``module``). Adding a block kind is one
declaration here, plus a section in the space files that should use it.

No torch at import time: genomes are parsed, checked and bred without it; ``module`` imports
``nas.genome.layers`` only when a network is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from torch import nn

Shape = tuple[int, ...]  # (C, H, W) in the body, (features,) after the readout

SECTIONS = ("body", "readout", "head")  # the order of the parts of every genome
ACTIVATIONS = ("relu", "relu6", "hardswish")


# the largest legal sizes: generous for any network a 48x48 classifier could want, and small enough that a
# typo (r100000000) is an error at once, not hours of building modules
KERNEL, CHANNELS, EXPANSION, STRIDE, REPEATS, UNITS = 63, 16_384, 64, 64, 64, 65_536


def number(prefix: str, low: float = 1, below: float | None = None, odd: bool = False) -> Any:
    """A numeric field written as ``<prefix><value>`` (``k3``, ``d0.5``), legal from ``low`` up to (not
    including) ``below``; ``odd``: odd values only (a kernel, so that 'same' padding keeps the map size)."""
    return field(metadata={"token": "number", "prefix": prefix, "low": low, "below": below, "odd": odd})


def out_of_range(f: Any, value: Any) -> str | None:
    """Why ``value`` is not a legal value of the numeric field ``f`` (None when it is, or ``f`` is not numeric).

    One rule for genomes and space files, so a space can list only values a network can be built from."""
    meta = f.metadata
    if meta["token"] != "number" or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    low, below = meta["low"], meta["below"]
    if value < low or (below is not None and value >= below):
        if isinstance(value, int) and below is not None:
            legal = f"{low:g} to {below - 1:g}"
        else:
            legal = f">= {low:g}" + (f" and < {below:g}" if below is not None else "")
        return f"{f.name} {value if isinstance(value, int) else f'{value:g}'} is outside the legal range ({legal})"
    if meta["odd"] and value % 2 == 0:
        return f"{f.name} {value} must be odd ('same' padding)"
    return None


def word(*choices: str) -> Any:
    """A field written as one of ``choices`` (``relu``)."""
    return field(metadata={"token": "word", "choices": choices})


def flag(name: str) -> Any:
    """A boolean field written as ``name`` when true and left out when false (``bn``)."""
    return field(metadata={"token": "flag", "name": name})


class Block:
    """What every block declaration provides; see the module docstring."""

    kind: ClassVar[str]  # the first token of the gene (``conv``)
    section: ClassVar[str]  # "body", "readout" or "head"
    bare: ClassVar[bool] = False  # written as its one word field alone (``gap``), without the kind

    def output_shape(self, shape: Shape) -> Shape:
        """The shape this block turns ``shape`` into; the builder's tensors must agree (a test says so)."""
        raise NotImplementedError

    def module(self, shape: Shape) -> nn.Module:
        """The torch module for an input of ``shape``."""
        raise NotImplementedError


BLOCKS: dict[str, type[Block]] = {}


def register(cls: type[Block]) -> type[Block]:
    """Make a declared block kind known to the grammar, the space files and the builder."""
    assert cls.section in SECTIONS, cls
    BLOCKS[cls.kind] = cls
    return cls


def token_fields(cls: type[Block]) -> list:
    """The dataclass fields of a block kind, in token order."""
    return list(fields(cls))


def _strided(shape: Shape, stride: int, channels: int) -> Shape:
    """'Same' padding: the map shrinks by ``stride``, rounding up."""
    _, h, w = shape
    return channels, (h - 1) // stride + 1, (w - 1) // stride + 1


# ---------------------------------------------------------------- body


@register
@dataclass(frozen=True)
class Conv(Block):
    """Plain convolution, 'same' padding, optional batch norm, then the activation."""

    kernel: int = number("k", below=KERNEL + 1, odd=True)
    channels: int = number("c", below=CHANNELS + 1)
    stride: int = number("s", below=STRIDE + 1)
    activation: str = word(*ACTIVATIONS)
    batch_norm: bool = flag("bn")

    kind: ClassVar[str] = "conv"
    section: ClassVar[str] = "body"

    def output_shape(self, shape: Shape) -> Shape:
        return _strided(shape, self.stride, self.channels)

    def module(self, shape: Shape) -> nn.Module:
        from nas.genome import layers

        return layers.ConvBlock(shape[0], self.channels, self.kernel, self.stride, self.activation, self.batch_norm)


@register
@dataclass(frozen=True)
class Pool(Block):
    """2x2 pooling with stride 2 (halves the feature map, rounding down)."""

    op: str = word("max", "avg")

    kind: ClassVar[str] = "pool"
    section: ClassVar[str] = "body"

    def output_shape(self, shape: Shape) -> Shape:
        c, h, w = shape
        return c, h // 2, w // 2

    def module(self, shape: Shape) -> nn.Module:
        from torch import nn

        return nn.MaxPool2d(2, 2) if self.op == "max" else nn.AvgPool2d(2, 2)


@register
@dataclass(frozen=True)
class InvertedResidual(Block):
    """MobileNetV2 inverted residual: 1x1 expand, kxk depthwise, optional SE, 1x1 linear projection.

    ``repeats`` stacks the block; only the first repeat uses ``stride`` (as in MobileNetV2).
    """

    kernel: int = number("k", below=KERNEL + 1, odd=True)
    expansion: int = number("e", below=EXPANSION + 1)
    channels: int = number("c", below=CHANNELS + 1)
    stride: int = number("s", below=STRIDE + 1)
    repeats: int = number("r", below=REPEATS + 1)
    se: bool = flag("se")

    kind: ClassVar[str] = "ir"
    section: ClassVar[str] = "body"

    def output_shape(self, shape: Shape) -> Shape:
        return _strided(shape, self.stride, self.channels)

    def module(self, shape: Shape) -> nn.Module:
        from nas.genome import layers

        return layers.stage(
            layers.InvertedResidualUnit, shape[0], self.channels, self.stride, self.repeats,
            kernel=self.kernel, expansion=self.expansion, se=self.se,
        )  # fmt: skip


@register
@dataclass(frozen=True)
class Residual(Block):
    """ResNet's basic block (He et al. 2016), the block of the strongest single FER2013 networks: two 3x3
    convolutions with batch norm and a skip, projected by a 1x1 convolution when the shape changes, ReLU
    after the sum. ``repeats`` stacks it; only the first repeat uses ``stride``.
    """

    channels: int = number("c", below=CHANNELS + 1)
    stride: int = number("s", below=STRIDE + 1)
    repeats: int = number("r", below=REPEATS + 1)

    kind: ClassVar[str] = "res"
    section: ClassVar[str] = "body"

    def output_shape(self, shape: Shape) -> Shape:
        return _strided(shape, self.stride, self.channels)

    def module(self, shape: Shape) -> nn.Module:
        from nas.genome import layers

        return layers.stage(layers.BasicBlock, shape[0], self.channels, self.stride, self.repeats)


# ---------------------------------------------------------------- readout and head


@register
@dataclass(frozen=True)
class Readout(Block):
    """Feature map -> vector: global average pooling (``gap``) or flattening (``flat``)."""

    op: str = word("gap", "flat")

    kind: ClassVar[str] = "readout"
    section: ClassVar[str] = "readout"
    bare: ClassVar[bool] = True

    def output_shape(self, shape: Shape) -> Shape:
        c, h, w = shape
        return (c * h * w,) if self.op == "flat" else (c,)

    def module(self, shape: Shape) -> nn.Module:
        from torch import nn

        if self.op == "gap":
            return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        return nn.Flatten()


@register
@dataclass(frozen=True)
class Dense(Block):
    """Fully connected layer with ReLU, then dropout; the 7-way classifier is always appended."""

    units: int = number("u", below=UNITS + 1)
    dropout: float = number("d", low=0.0, below=1.0)

    kind: ClassVar[str] = "dense"
    section: ClassVar[str] = "head"

    def output_shape(self, shape: Shape) -> Shape:
        return (self.units,)

    def module(self, shape: Shape) -> nn.Module:
        from torch import nn

        return nn.Sequential(nn.Linear(shape[0], self.units), nn.ReLU(inplace=True), nn.Dropout(self.dropout))
