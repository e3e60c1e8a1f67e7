"""Zero-cost proxies: scores of an untrained network, computed in well under a second, that may predict
its accuracy after training (Abdelfattah et al. 2021; Mellor et al. 2021). Used by no search: only
``benchmarks/bench_fidelity.py --grid proxies`` scores them against the long reference, and no result of
that is recorded yet, so none is trusted.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nas.data import Split, normalize


def _fresh(model: nn.Module) -> nn.Module:
    model.train()
    model.zero_grad(set_to_none=True)
    return model


def synflow(model: nn.Module, input_shape: tuple[int, int, int]) -> float:
    """log of sum |theta * dR/dtheta| with R the output of the network on an all-ones input, with every
    weight replaced by its magnitude (data-free; Tanaka et al. 2020), computed in float64."""
    model = _fresh(model).double()
    signs = {}
    with torch.no_grad():
        for name, p in model.state_dict().items():
            signs[name] = torch.sign(p)
            p.abs_()
    model.eval()  # batch norm with its initial statistics: an affine identity
    model(torch.ones(1, *input_shape, dtype=torch.float64)).sum().backward()
    score = sum((p * p.grad).abs().sum().item() for p in model.parameters() if p.grad is not None)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            p.mul_(signs[name])
    model.float()
    return float(np.log(score + 1e-30))


def naswot(model: nn.Module, batch: Split) -> float:
    """log |det K| of the kernel of binary activation codes over a batch (Mellor et al. 2021): networks
    whose units tell the images apart at initialisation train better."""
    model = _fresh(model)
    codes: list[torch.Tensor] = []

    def hook(module, inputs, output) -> None:
        codes.append((output.detach().flatten(1) > 0).float())

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6, nn.Hardswish))
    ]
    with torch.no_grad():
        model(normalize(batch.x))
    for h in handles:
        h.remove()
    if not codes:
        return 0.0
    c = torch.cat(codes, 1)
    k = c @ c.T + (1 - c) @ (1 - c).T  # units agreeing, per pair of images
    return float(torch.linalg.slogdet(k.double())[1])


def grad_norm(model: nn.Module, batch: Split) -> float:
    """Norm of the loss gradient on one labelled batch at initialisation."""
    model = _fresh(model)
    nn.functional.cross_entropy(model(normalize(batch.x)), batch.y).backward()
    return float(torch.sqrt(sum((p.grad**2).sum() for p in model.parameters() if p.grad is not None)))


PROXIES = {"synflow": synflow, "naswot": naswot, "grad_norm": grad_norm}


def scores(model: nn.Module, batch: Split) -> dict[str, float]:
    """Every proxy of one network (a copy of its initial weights each time)."""
    import copy

    shape = tuple(batch.x.shape[1:])
    return {
        "synflow": synflow(copy.deepcopy(model), shape),
        "naswot": naswot(copy.deepcopy(model), batch),
        "grad_norm": grad_norm(copy.deepcopy(model), batch),
    }
