"""The settings of the two commands that follow a search, declared once as ``nas.config`` declares a
search's: the Optuna study of the champion's recipe and its confirmation at full length (``tune``), and the
full training with its test report (``train``). The flags and their help derive from these fields
(``nas.settings.add_flags``); ``nas.training.tuning`` and ``nas.training.final`` take them. Torch-free, so
that ``--help`` answers at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from nas.errors import SettingError
from nas.settings import check_choices, setting

# how the loss answers FER2013's imbalance (disgust is 1.5% of Training): not at all, cross-entropy weighted
# by inverse class frequency, or balanced softmax (Ren et al. 2020: the log prior added to the logits in
# training only, so the trained logits estimate the balanced posterior)
CLASS_BALANCE = ("none", "weighted", "softmax")
RECIPE_NAMES = ("default", "vgg")  # nas.training.loop.RECIPES' names (a test keeps them equal)
# auto: the tuned recipe where tuning's confirmation at full length adopted it, else the default; in a run never
# tuned, the search's own training of the champion where the search trained it fully (searched)
CHAMPION_RECIPES = ("auto", "tuned", "searched")
PRUNERS = ("median", "hyperband", "none")
# a teacher's targets (nas.training.distill): its answer for the student's augmented batch, or each image's
# ten-crop average, computed once
DISTILL_TARGETS = ("online", "offline")
# the teachers' share of a distilled training's loss unless told: Hinton et al.'s (2015) usual mix
DISTILL_WEIGHT = 0.5
# ``--teacher none``: no teacher, also where the recipe itself distils (a tuned one; the distillation stage's
# students trained without their teachers)
NO_TEACHER = "none"


def _at_least(minimum: float, **values: float | None) -> None:
    for flag, value in values.items():
        if value is not None and value < minimum:
            raise SettingError(f"--{flag.replace('_', '-')} must be >= {minimum:g}, got {value:g}")


@dataclass(frozen=True)
class StudyOptions:
    """The Optuna study: how many recipes, each trained how long on how much of Training."""

    trials: int = setting(30, "training recipes to try")
    epochs: int = setting(6, "epochs per trial")
    train_images: int | None = setting(10_000, "stratified Training subset per trial (0 or none: all)")
    pruner: str = setting("median", "stops hopeless trials", choices=PRUNERS)
    storage: str | None = setting(None, "Optuna RDB URL (default sqlite:///<run>/tune.db)")
    resume: bool = setting(False, "continue an existing study")
    seed: int = setting(0, "the sampler's, the trials' training and their Training subset's seed")
    device: str = setting("auto", "auto, cpu or cuda")
    teacher: tuple[str, ...] = setting(
        (), "also tune a distillation from these teachers (as train.py's --teacher): its weight, temperature, targets"
    )

    def __post_init__(self) -> None:
        _at_least(1, trials=self.trials, epochs=self.epochs)
        _at_least(0, train_images=self.train_images)
        check_choices(self)
        if self.train_images == 0:  # "all", as the flag's help says
            object.__setattr__(self, "train_images", None)


@dataclass(frozen=True)
class ConfirmOptions:
    """The confirmation at full length of the default and the study's best recipes (``tuning.Confirmation``)."""

    best: int = setting(2, "best recipes to confirm (0: none; then train.py keeps the default)", flag="--confirm")
    epochs: int = setting(100, "the full length, as train.py's --epochs", flag="--confirm-epochs")
    patience: int = setting(0, "as train.py's --patience", flag="--confirm-patience")
    core_hours: float = setting(3.0, "cap on the estimated cost; fewer recipes if over", flag="--confirm-core-hours")
    margin: float = setting(
        0.01,
        "PublicTest accuracy a tuned recipe must win by (one seed each; two seeds of one recipe: 0.016 apart)",
        flag="--confirm-margin",
    )

    def __post_init__(self) -> None:
        _at_least(0, confirm=self.best, confirm_patience=self.patience, confirm_core_hours=self.core_hours,
                  confirm_margin=self.margin)  # fmt: skip
        _at_least(1, confirm_epochs=self.epochs)


@dataclass(frozen=True)
class FinalOptions:
    """The champion's (or a genome's, or a baseline's) full training: which recipe, how long, where to."""

    recipe: str = setting("auto", "the training recipe (auto: tuned if its confirmation adopted it, else default; "
                          "in a run never tuned, searched where the search trained the network fully)",
                          choices=(*CHAMPION_RECIPES, *RECIPE_NAMES))  # fmt: skip
    class_balance: str | None = setting(
        None, "loss for the class imbalance: inverse-frequency weights or balanced softmax (default: the recipe's)",
        choices=CLASS_BALANCE,
    )  # fmt: skip
    ema: float | None = setting(None, "moving average of the weights, decay per step (0: off; default: the recipe's)")
    label_smoothing: float | None = setting(None, "default: the recipe's")
    epochs: int = setting(100, "the length of the schedule")
    patience: int = setting(
        0,
        "stop after this many epochs without a better validation accuracy (0: never; the default schedule gains "
        "most in its final decay, and stopping one-cycle at 10 cost 1.8 points on mini-Xception); the best "
        "epoch is kept either way",
    )
    seed: int | None = setting(None, "initialisation and data order (default: the recipe's, 0)")
    device: str = setting("auto", "auto, cpu or cuda")
    out: str | None = setting(None, "output folder (default: the run directory; distilled/<name> with --teacher)")
    teacher: tuple[str, ...] = setting(
        (),
        "distil from these fully trained networks (model.pt or exported model.onnx files, or folders holding one, "
        "comma-separated; best: the run's 3 most accurate by PublicTest accuracy; nas/models: the package's own "
        "model; none: no teacher, even where the recipe distils); an ensemble averages their probabilities",
    )
    distill_weight: float | None = setting(None, f"the teachers' share of the loss (default: {DISTILL_WEIGHT})")
    distill_temperature: float | None = setting(None, "the teachers' temperature (default: the recipe's, 4)")
    distill_targets: str | None = setting(
        None,
        "online: the teachers see the student's augmented batch; offline: each image's ten-crop average, computed "
        "once (default: the recipe's, online)",
        choices=DISTILL_TARGETS,
    )

    def __post_init__(self) -> None:
        _at_least(1, epochs=self.epochs)
        _at_least(0, patience=self.patience)
        check_choices(self)
        distilling = {"distill_weight": self.distill_weight, "distill_temperature": self.distill_temperature,
                      "distill_targets": self.distill_targets}  # fmt: skip
        stray = [k for k, v in distilling.items() if v is not None]
        if NO_TEACHER in self.teacher and len(self.teacher) > 1:
            raise SettingError(f"--teacher {NO_TEACHER} stands alone, got {','.join(self.teacher)}")
        if stray and not self.taught:
            raise SettingError(f"--{stray[0].replace('_', '-')} needs --teacher")
        if self.distill_weight is not None and not 0 < self.distill_weight <= 1:
            raise SettingError(f"--distill-weight must be in (0, 1], got {self.distill_weight:g}")
        if self.distill_temperature is not None and not self.distill_temperature > 0:
            raise SettingError(f"--distill-temperature must be > 0, got {self.distill_temperature:g}")

    def changes(self) -> dict:
        """The training settings given on top of the recipe (a teacher's fingerprint is added once it is read)."""
        given = {"class_balance": self.class_balance, "ema": self.ema, "label_smoothing": self.label_smoothing,
                 "distill_temperature": self.distill_temperature, "distill_targets": self.distill_targets}  # fmt: skip
        if self.taught:
            given["distill_weight"] = DISTILL_WEIGHT if self.distill_weight is None else self.distill_weight
        elif self.teacher:  # none: whatever the recipe's distillation
            given |= {"distill_weight": 0.0, "teacher": ""}
        return {k: v for k, v in given.items() if v is not None}

    @property
    def taught(self) -> bool:
        """Whether teachers are named (``none`` names none)."""
        return bool(self.teacher) and self.teacher != (NO_TEACHER,)


@dataclass(frozen=True)
class StudentOptions:
    """Which networks the distillation stage (``nas distill``) teaches: the search's best-ranked front members
    at the small end, in two groups, each trained with and without the teachers."""

    students: int = setting(1, "front members per group (the search's best-ranked there)")
    like: str = setting("mini_xception", "the fast group: within this baseline's latency (measured beside them)")
    max_params: int = setting(200_000, "the small group: within this many parameters and --max-latency-ms")
    max_latency_ms: float = setting(1.0, "the small group's latency limit")

    def __post_init__(self) -> None:
        _at_least(1, students=self.students, max_params=self.max_params)
        if not self.max_latency_ms > 0:
            raise SettingError(f"--max-latency-ms must be > 0, got {self.max_latency_ms:g}")
