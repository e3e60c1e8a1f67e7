"""Genome -> ``torch.nn.Module``: the only place a genome becomes a network.

Each gene builds its own module (``module`` of its declaration in ``nas.genome.blocks``); the builder carries
the shape from block to block (timm's ``_efficientnet_builder`` does the same with the channel count),
so genes never name their input width.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from nas.genome.grammar import Gene, Genome, Readout


class Network(nn.Module):
    """A built genome: ``features`` (body), ``readout``, ``head`` (dense layers + classifier)."""

    def __init__(self, genome: Genome, input_shape: tuple[int, int, int] = (1, 48, 48), num_classes: int = 7):
        super().__init__()
        self.genome = str(genome)
        self.input_shape = tuple(input_shape)
        body, shape = chain(genome.body, self.input_shape)
        self.features = nn.Sequential(*body)
        readout = genome.readout or Readout("gap")
        self.readout = readout.module(shape)
        head, shape = chain(genome.head, readout.output_shape(shape))
        head.append(nn.Linear(shape[0], num_classes))
        self.head = nn.Sequential(*head)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.readout(self.features(x)))


def chain(genes: Iterable[Gene], shape: tuple[int, ...]) -> tuple[list[nn.Module], tuple[int, ...]]:
    """Each gene's module at the shape it meets, and the shape after the last: a network's layers, or a
    latency unit's (``nas.deploy.latency``)."""
    modules = []
    for gene in genes:
        modules.append(gene.module(shape))
        shape = gene.output_shape(shape)
    return modules, tuple(shape)


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
