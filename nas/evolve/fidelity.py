"""How much training a candidate gets: the fidelity presets, and budgets spelled out on the command line.

A fidelity is plain data (it travels to the workers and is stored, resolved, in a run's ``config.json``);
its ``key`` is what cache keys hash, so that a record is reused only for the very same training.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace

from nas.errors import SettingError
from nas.genome.grammar import Genome
from nas.training.loop import RECIPES, TrainConfig

_RECIPE = RECIPES["default"]  # what the final training trains with (nas.training.final)


@dataclass(frozen=True)
class Fidelity:
    """How much training one candidate gets: the budget that makes a search affordable."""

    name: str
    train_images: int | None  # stratified subset of Training (None: all 28,709)
    epochs: int
    val_images: int | None = None  # stratified subset of PublicTest (None: all 3,589)
    lr: float = 3e-3
    batch_size: int = 128
    augment: float = 0.3
    # validation on PublicTest after every epoch (about a quarter of a brief training's time), or only
    # where a decision needs it: at the end of the schedule, or of a successive-halving rung
    validate_every_epoch: bool = False
    class_balance: str = "none"  # the loss's answer to the class imbalance (nas.training.options.CLASS_BALANCE)
    # a proxy network: every block's channel count times ``width`` (EcoNAS's reduced-channel proxy); the
    # objectives (parameters, FLOPs, latency) are always the real network's, only its training is cheaper
    width: float = 1.0
    # validate a network that trains in bf16 in bf16 too (TrainConfig.validate_bf16); runs configured
    # before 2026-11-25 validated in fp32 and keep doing so, so their cached records stay comparable
    validate_bf16: bool = True
    # the schedule: one-cycle, complete in ``epochs``; or wsd, whose constant phase can be cut into rungs
    # and continued, each rung scored after a cool-down branch of ``branch`` epochs (nas.training.loop)
    scheduler: str = "onecycle"
    branch: float = 0.0

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(
            optimizer="adamw",
            lr=self.lr,
            scheduler=self.scheduler,
            batch_size=self.batch_size,
            epochs=self.epochs,
            augment=self.augment,
            validate_every_epoch=self.validate_every_epoch,
            validate_bf16=self.validate_bf16,
            class_balance=self.class_balance,
            seed=seed,
        )

    @property
    def key(self) -> str:
        """What the cache key hashes; the settings as every fidelity had them before each choice existed
        (every epoch validated, the plain loss, full width, fp32 validation) hash as they did then, so
        older runs' caches stay valid."""
        fields = asdict(self)
        if fields["validate_every_epoch"]:
            del fields["validate_every_epoch"]
        if fields["class_balance"] == "none":
            del fields["class_balance"]
        if fields["width"] == 1.0:
            del fields["width"]
        if not fields["validate_bf16"]:
            del fields["validate_bf16"]
        if fields["scheduler"] == "onecycle" and not fields["branch"]:
            del fields["scheduler"], fields["branch"]
        return json.dumps(fields, sort_keys=True)

    def trained_genome(self, genome: Genome) -> Genome:
        """The network this fidelity trains for ``genome``: itself, or its proxy of ``width`` times the
        channels (rounded, at least 4 a block; dense layers keep their units, they cost little). Where the
        floor makes two different widths equal (width 0.25: 8 and 16 channels both become 4), the proxy
        gains identity shortcuts the real network lacks; at 0.5 the default space's widths stay apart."""
        if self.width == 1.0:
            return genome
        narrow = [
            replace(g, channels=max(4, int(g.channels * self.width + 0.5))) if hasattr(g, "channels") else g
            for g in genome.genes
        ]
        return Genome(tuple(narrow))


# Chosen by benchmarks/bench_fidelity.py against a long training (30 epochs on all of Training) of 24
# networks within the 60-MFLOP budget (benchmarks/results/fidelity_cpu.md, 2026-11-25): 6,000 images x 4
# epochs ranks them with Kendall tau 0.48; every cheaper schedule measured ranks them worse (6,000 x 2,
# the default of 2026-11-24/25, 0.33; 3,000 x 2 at batch 32 0.33), and only successive halving on this
# schedule with rungs 3,4 (nas.evolve.strategies, the default strategy) keeps its tau (0.49) for less training.
FIDELITIES = {
    "cheap": Fidelity("cheap", train_images=3000, epochs=2),  # smoke runs: ranks poorly
    "default": Fidelity("default", train_images=6000, epochs=4),
    "long": Fidelity("long", train_images=6000, epochs=4),  # the same schedule, by its old name
    "rich": Fidelity("rich", train_images=12000, epochs=4),  # the finalists'
    # the final training itself (all of Training, the default recipe's optimizer, learning rate, batch and
    # augmentation, 100 epochs of warmup-stable-decay), to be cut into rungs that each score a quarter-epoch
    # cool-down branch and continue (issue #33; benchmarks/bench_fidelity.py measures its rank fidelity)
    "full": Fidelity(
        "full",
        train_images=None,
        epochs=100,
        lr=_RECIPE.lr,
        batch_size=_RECIPE.batch_size,
        augment=_RECIPE.augment,
        class_balance=_RECIPE.class_balance,
        scheduler="wsd",
        branch=0.25,
    ),  # fmt: skip
}


_NUMBER = r"(\d*\.?\d+(?:e-?\d+)?)"
_SPEC = re.compile(rf"(\d+|all)x(\d+)(?:b(\d+))?(?:w{_NUMBER})?(?:lr{_NUMBER})?(wsd(?:c{_NUMBER})?)?")


def get_fidelity(name: str) -> Fidelity:
    """A preset by name, or a spelled-out budget ``IMAGESxEPOCHS[bBATCH][wWIDTH][lrLR][wsd[cBRANCH]]``
    (``3000x2b32``, ``6000x2w0.5``, ``allx100wsdc0.25``): Training images (``all``), epochs of a complete
    one-cycle schedule, batch size, the proxy's channel width, peak learning rate, and ``wsd``: a
    warmup-stable-decay schedule instead, its rungs scored by cool-down branches of ``BRANCH`` epochs
    (default 0.25); what the presets leave out is theirs."""
    if name in FIDELITIES:
        return FIDELITIES[name]
    spec = name.lower()
    m = _SPEC.fullmatch(spec)
    if m is None:
        raise SettingError(
            f"--fidelity: unknown fidelity {name!r}; choose from {', '.join(FIDELITIES)}, or spell one out as "
            "IMAGESxEPOCHS[bBATCH][wWIDTH][lrLR][wsd[cBRANCH]], e.g. 3000x2b32"
        )
    n, e, b, w, lr, wsd, branch = m.groups()
    width = float(w or 1)
    if not 0 < width <= 1:
        raise SettingError(f"--fidelity {name!r}: the proxy's width must be in (0, 1], got {width:g}")
    schedule = {"scheduler": "wsd", "branch": float(branch or 0.25)} if wsd else {}
    if wsd and schedule["branch"] > 1:  # a branch is drawn from one pass over the images
        raise SettingError(f"--fidelity {name!r}: a rung's cool-down branch must be in [0, 1] epochs, got {branch}")
    images = None if n == "all" else int(n)
    fidelity = Fidelity(spec, images, int(e), batch_size=int(b or 128), width=width, lr=float(lr or 3e-3), **schedule)
    try:
        fidelity.train_config(0)
    except SettingError as exc:
        raise SettingError(f"--fidelity {name!r}: {exc}") from None
    if images is not None and images < 1:
        raise SettingError(f"--fidelity {name!r}: need at least 1 training image")
    return fidelity
