"""The training settings: :class:`TrainConfig` (optimization) and :class:`CheckpointOptions`.

Each validates itself when it is built, from flags, from Python or from a run's
``config.json`` alike, and raises :class:`~ppl_vae.models.config.ConfigError` naming the
field; the command line, :class:`~ppl_vae.training.trainer.Trainer` and
:func:`~ppl_vae.training.trainer.fit` repeat neither the checks nor the defaults.
"""

import math
from dataclasses import InitVar, asdict, dataclass

from ppl_vae.infer.elbos import COMPILE_MODES, ELBOS, JIT_ELBOS
from ppl_vae.models.config import ConfigError, require, require_choice, require_count
from ppl_vae.training.schedules import LR_SCHEDULES

ON_NAN = ("stop", "skip")


@dataclass
class TrainConfig:
    """Optimization settings for :func:`~ppl_vae.training.trainer.fit`.

    :param epochs: passes over the training split.
    :param batch_size: datapoints per step.
    :param lr: Adam's learning rate.
    :param elbo: ``"trace"``, ``"mean-field"``, ``"iwae"`` or ``"enum"`` (see :func:`~ppl_vae.infer.elbos.make_elbo`).
    :param num_particles: samples of z per datapoint and step.
    :param beta: the KL weight of the beta-VAE (1 is the ELBO).
    :param warmup_epochs: epochs of linear KL warm-up from ~0 to ``beta`` (0: none).
    :param seed: seed of Pyro's, torch's and the shuffling RNGs.
    :param patience: early stopping: stop when the validation bound (the ELBO; for ``"iwae"``
        the IWAE bound with ``num_particles``) has not improved for this many epochs, and
        keep the weights of the best epoch (0: off; needs a validation split).
    :param lr_decay: multiply the learning rate by this factor whenever the validation bound
        has not improved for ``lr_patience`` epochs (torch's ``ReduceLROnPlateau``;
        1: off; needs a validation split).
    :param lr_patience: epochs without improvement before each decay.
    :param lr_schedule: ``"constant"`` or ``"burda"``: Burda et al.'s stepwise decay to a
        tenth of ``lr``, scaled to ``epochs`` (:func:`ppl_vae.training.schedules.scheduled_lr`);
        not combined with ``lr_decay``.
    :param compile: how the step is compiled (:mod:`ppl_vae.infer.auto_compile`): ``"auto"``
        records the ELBO and its gradient as a graph (:mod:`ppl_vae.infer.compiled`), checks it
        against the uncompiled ELBO on the first step and falls back, with a notice, where it
        cannot be used; ``"fx"`` and ``"inductor"`` compile without the fallback (``"inductor"``:
        fused kernels, seconds of compilation per batch shape); ``"off"`` runs Pyro's ELBO.
    :param init_output_bias: before the first step of a new run, start p(x|z) at the training
        data's mean (:meth:`ppl_vae.models.base.Model.initialize_from_data`).
    :param jit: the older name: True is ``compile="fx"``, False ``compile="off"``.
    :raises ConfigError: for a value out of its range.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    elbo: str = "trace"
    num_particles: int = 1
    beta: float = 1.0
    warmup_epochs: float = 0.0
    seed: int = 0
    patience: int = 0
    lr_decay: float = 1.0
    lr_patience: int = 3
    lr_schedule: str = "constant"
    compile: str = "auto"
    init_output_bias: bool = False
    jit: InitVar[bool | None] = None

    def __post_init__(self, jit: bool | None = None) -> None:
        if jit is not None:  # the older setting
            require(self.compile in ("auto", "fx" if jit else "off"), "jit", f"{jit} contradicts {{compile}} {self.compile}")
            self.compile = "fx" if jit else "off"
        for name in ("epochs", "batch_size", "num_particles"):
            require_count(self, name, minimum=1)
        for name in ("patience", "lr_patience"):
            require_count(self, name, minimum=0)
        require_count(self, "seed", minimum=-(2**63), maximum=2**63 - 1)
        require(math.isfinite(self.lr) and self.lr > 0, "lr", f"must be positive and finite, got {self.lr}")
        require(math.isfinite(self.beta) and self.beta > 0, "beta", f"must be positive, got {self.beta}")
        require(math.isfinite(self.warmup_epochs) and self.warmup_epochs >= 0, "warmup_epochs",
                f"must be finite and at least 0, got {self.warmup_epochs}")
        require(0 < self.lr_decay <= 1, "lr_decay", f"must be in (0, 1] (1: off), got {self.lr_decay}")
        require_choice(self, "elbo", tuple(ELBOS), what="ELBO")
        require_choice(self, "compile", COMPILE_MODES, what="compile mode")
        require(self.compile in ("auto", "off") or self.elbo in JIT_ELBOS, "compile",
                f"{self.compile} cannot compile the {self.elbo} ELBO; compile one of {', '.join(JIT_ELBOS)}, "
                "or choose auto or off")
        require_choice(self, "lr_schedule", LR_SCHEDULES, what="learning-rate schedule")
        if self.lr_schedule != "constant" and self.lr_decay < 1:
            raise ConfigError("lr_schedule", f"{self.lr_schedule} and {{lr_decay}} exclude each other (a schedule or "
                              "plateau decay); choose one")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CheckpointOptions:
    """How often training checkpoints are written, how many are kept, and the NaN policy.

    :param every_steps: also checkpoint every this many steps (0: at epoch ends only).
    :param every_seconds: also checkpoint when this many seconds have passed since the last (0: off).
    :param keep: how many training checkpoints to keep.
    :param on_nan: ``"stop"`` (raise at the first non-finite loss or gradient, naming the
        site) or ``"skip"`` (skip the step; give up after ``max_skipped`` in a row).
    :param max_skipped: with ``"skip"``, how many steps in a row may be skipped.
    :raises ConfigError: for a value out of its range.
    """

    every_steps: int = 0
    every_seconds: float = 600.0
    keep: int = 2
    on_nan: str = "stop"
    max_skipped: int = 100

    def __post_init__(self) -> None:
        require_count(self, "every_steps", minimum=0)
        require(math.isfinite(self.every_seconds) and self.every_seconds >= 0, "every_seconds",
                f"must be finite and at least 0, got {self.every_seconds}")
        require_count(self, "keep", minimum=1)
        require_count(self, "max_skipped", minimum=1)
        require_choice(self, "on_nan", ON_NAN, what="NaN policy")

    def to_dict(self) -> dict:
        return asdict(self)


def check_trainable(config: TrainConfig, data, distributed=None) -> None:
    """What a (valid) training config asks of the data: a validation split for early stopping
    and plateau decay, and enough datapoints in every batch for every rank.

    :raises ConfigError: naming the setting.
    """
    for name, used in (("patience", config.patience > 0), ("lr_decay", config.lr_decay < 1)):
        if used and data.valid is None:
            raise ConfigError(name, f"needs a validation split; dataset {data.name!r} has none "
                              "(hold one out with {validation_size}, e.g. 10000 for the MNIST family)")
    last = len(data.train) % config.batch_size or config.batch_size
    if min(last, config.batch_size) < (1 if distributed is None else distributed.world_size):
        raise ConfigError("batch_size", f"gives a batch of {last} datapoints, which {distributed.world_size} "
                          "processes cannot share; choose another")


def initialize_output_bias(model, data) -> None:
    """``config.init_output_bias``: :meth:`~ppl_vae.models.base.Model.initialize_from_data` on the
    training split (it reads no RNG, so calling it twice changes nothing).

    :raises ConfigError: for a model or likelihood without an output bias to set.
    """
    try:
        model.initialize_from_data(data.train)
    except NotImplementedError as error:
        raise ConfigError("init_output_bias", f"is not available here: {error}") from None
