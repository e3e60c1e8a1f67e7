"""The torch modules block declarations (``nas.genome.blocks``) are built from.

Weights are initialised by ``nas.genome.build``; these modules only fix the structure.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "hardswish": lambda: nn.Hardswish(inplace=True),
}


class ConvBlock(nn.Sequential):
    """Convolution with 'same' padding, optional batch norm (then no conv bias), activation."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, activation: str, batch_norm: bool) -> None:
        layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_ch))
        layers.append(ACTIVATIONS[activation]())
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

    def __init__(self, in_ch: int, out_ch: int, stride: int, kernel: int, expansion: int, se: bool) -> None:
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


class BasicBlock(nn.Module):
    """ResNet's basic block: conv-BN-ReLU, conv-BN, plus the input (projected when the shape changes), ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        )
        project = stride != 1 or in_ch != out_ch
        self.skip = (
            nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
            if project
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


def stage(unit: Callable[..., nn.Module], in_ch: int, out_ch: int, stride: int, repeats: int, **kw) -> nn.Sequential:
    """``repeats`` units in a row; only the first one strides or changes the width (MobileNetV2, ResNet)."""
    units = []
    for r in range(repeats):
        units.append(unit(in_ch, out_ch, stride if r == 0 else 1, **kw))
        in_ch = out_ch
    return nn.Sequential(*units)
