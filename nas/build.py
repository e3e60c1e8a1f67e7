"""Genome -> ``torch.nn.Module``: the only place a genome becomes a network.

One table maps each gene type to the module that builds it; the builder carries the channel count from
block to block (timm's ``_efficientnet_builder`` does the same), so genes never name their input width.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nas.genome import Conv, Dense, Gene, Genome, InvertedResidual, Pool, Readout, feature_shapes, readout_features

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "hardswish": lambda: nn.Hardswish(inplace=True),
}


class ConvBlock(nn.Sequential):
    def __init__(self, gene: Conv, in_ch: int) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, gene.channels, gene.kernel, gene.stride, gene.kernel // 2, bias=not gene.batch_norm)
        ]
        if gene.batch_norm:
            layers.append(nn.BatchNorm2d(gene.channels))
        layers.append(_ACTIVATIONS[gene.activation]())
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention as in MobileNetV3: global pool, bottleneck (1/4), hard-sigmoid gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(8, channels // 4)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.expand(torch.relu(self.reduce(s)))
        return x * nn.functional.hardsigmoid(s)


class InvertedResidualUnit(nn.Module):
    """One MobileNetV2 unit: expand (skipped when e=1), depthwise, [SE], linear projection."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, expansion: int, stride: int, se: bool) -> None:
        super().__init__()
        hidden = in_ch * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(in_ch, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
        ]
        if se:
            layers.append(SqueezeExcite(hidden))
        layers += [nn.Conv2d(hidden, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class InvertedResidualStage(nn.Sequential):
    def __init__(self, gene: InvertedResidual, in_ch: int) -> None:
        units = []
        for r in range(gene.repeats):
            stride = gene.stride if r == 0 else 1
            units.append(InvertedResidualUnit(in_ch, gene.channels, gene.kernel, gene.expansion, stride, gene.se))
            in_ch = gene.channels
        super().__init__(*units)


def _pool(gene: Pool, in_ch: int) -> nn.Module:
    return nn.MaxPool2d(2, 2) if gene.op == "max" else nn.AvgPool2d(2, 2)


def _readout(gene: Readout, in_ch: int) -> nn.Module:
    if gene.op == "gap":
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return nn.Flatten()


def _dense(gene: Dense, in_features: int) -> nn.Module:
    return nn.Sequential(nn.Linear(in_features, gene.units), nn.ReLU(inplace=True), nn.Dropout(gene.dropout))


# gene type -> (module factory taking the incoming width)
BLOCKS: dict[type, Callable[[Gene, int], nn.Module]] = {
    Conv: ConvBlock,
    Pool: _pool,
    InvertedResidual: InvertedResidualStage,
    Readout: _readout,
    Dense: _dense,
}


class Network(nn.Module):
    """A built genome: ``features`` (body), ``readout``, ``head`` (dense layers + classifier)."""

    def __init__(self, genome: Genome, input_shape: tuple[int, int, int] = (1, 48, 48), num_classes: int = 7):
        super().__init__()
        self.genome = str(genome)
        self.input_shape = tuple(input_shape)
        widths = [input_shape[0]] + [shape[0] for shape in feature_shapes(genome, input_shape)]
        self.features = nn.Sequential(*(BLOCKS[type(g)](g, c) for g, c in zip(genome.body, widths)))
        self.readout = BLOCKS[Readout](genome.readout or Readout("gap"), widths[-1])
        width = readout_features(genome, input_shape)
        head = []
        for gene in genome.head:
            head.append(BLOCKS[Dense](gene, width))
            width = gene.units
        head.append(nn.Linear(width, num_classes))
        self.head = nn.Sequential(*head)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.readout(self.features(x)))


def _init_weights(model: nn.Module) -> None:
    """He init for convs, as torchvision's MobileNetV2 does; PyTorch's default suits the rest."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build(genome: Genome, input_shape: tuple[int, int, int] = (1, 48, 48), num_classes: int = 7) -> Network:
    """Build the network for a genome; the genome should be valid in its space (see space.validate)."""
    return Network(genome, input_shape, num_classes)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: tuple[int, int, int] = (1, 48, 48)) -> int:
    """FLOPs of one image's forward pass, by torch's own counter (convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    return int(counter.get_total_flops())
