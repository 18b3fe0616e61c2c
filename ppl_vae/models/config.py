"""A model/guide pair described by a small config, validated when built, and rebuilt from it.

:class:`ModelConfig` checks itself in ``__post_init__``: a config built from flags, from
Python or read back from a run's ``config.json`` or checkpoint goes through the same
checks, which raise :class:`ConfigError` naming the field.
"""

import math
import re
from collections.abc import Callable
from dataclasses import InitVar, asdict, dataclass, field, fields
from typing import Any

from torch import nn

from ppl_vae.guides import GUIDES
from ppl_vae.models.registry import MODELS
from ppl_vae.nn.likelihoods import LIKELIHOODS
from ppl_vae.nn.networks import ACTIVATIONS, NETWORKS
from ppl_vae.priors import PRIORS


class ConfigError(ValueError):
    """A setting is out of its range; ``field`` names it (the command line names the flag instead).

    :param field: the config field.
    :param problem: what is wrong, e.g. ``"must be at least 1, got 0"``; ``{name}`` stands for
        another field, named in the same way.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(self.render(str))

    def render(self, name: Callable[[str], str]) -> str:
        """The message with each field called ``name(field)`` (e.g. its command-line flag)."""
        return f"{name(self.field)} " + re.sub(r"\{([a-z_.]+)\}", lambda m: name(m.group(1)), self.problem)


def require(condition: bool, name: str, problem: str) -> None:
    """Raise :class:`ConfigError` for field ``name`` unless ``condition``."""
    if not condition:
        raise ConfigError(name, problem)


def require_count(config: Any, name: str, minimum: int, maximum: int | None = None) -> None:
    """Field ``name`` of ``config`` is a whole number in ``[minimum, maximum]``."""
    value = getattr(config, name)
    require(isinstance(value, int) and not isinstance(value, bool), name, f"must be an integer, got {value!r}")
    require(value >= minimum, name, f"must be at least {minimum}, got {value}")
    require(maximum is None or value <= maximum, name, f"must be at most {maximum}, got {value}")


def require_choice(config: Any, name: str, choices: tuple, what: str | None = None) -> None:
    """Field ``name`` of ``config`` is one of ``choices``."""
    value = getattr(config, name)
    if value not in choices:
        raise ConfigError(name, f"is {value!r}, not a known {what or 'choice'}; choose from {', '.join(map(str, choices))}")


def resolve_model(model: str, conditional: str | None) -> str:
    """The model that ``model`` and the conditional name ``conditional`` (``"none"`` or a
    conditional model's name; None when not given) choose together.

    :raises ConfigError: when they name two different models.
    """
    if conditional is None or conditional == "none":
        return model
    require(conditional in MODELS and MODELS[conditional].conditional, "conditional",
            f"is {conditional!r}, not a known conditional model; choose from none, "
            + ", ".join(name for name, entry in MODELS.items() if entry.conditional))
    require(model in ("vae", conditional), "conditional", f"{conditional} does not combine with {{model}} {model}")
    return conditional


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model/guide pair (weights aside).

    :param event_shape: the shape of one datapoint.
    :param z_dim: the latent dimension.
    :param network: ``"mlp"`` or ``"conv"``.
    :param hidden_dims: hidden widths of the encoder (the decoder mirrors them).
    :param activation: activation name.
    :param likelihood: likelihood name.
    :param guide: guide name.
    :param guide_options: the guide's own options.
    :param model: the model, by its name in :data:`ppl_vae.models.registry.MODELS`:
        ``"vae"`` (:class:`~ppl_vae.models.vae.VAE`), ``"hierarchical"``
        (:class:`~ppl_vae.models.hierarchical.HierarchicalVAE`), ``"label"``
        (:class:`~ppl_vae.models.conditional.LabelConditionalVAE`) or ``"quadrants"``
        (:class:`~ppl_vae.models.quadrants.QuadrantCVAE`).
    :param prior: the prior of the (top) latent site, by its name in :data:`ppl_vae.priors.registry.PRIORS`.
    :param prior_options: the prior's own options, e.g. ``{"num_components": 10}``.
    :param num_classes: classes of the label-conditional model.
    :param learned_prior: the label-conditional model learns p(z|y).
    :param visible_quadrants: 1, 2 or 3 for the quadrant model.
    :param quadrant_layout: the quadrant model's networks: ``"pyro"`` (generation network
        on z alone, recognition network on the digit with the hidden pixels filled in, as
        in Pyro's example) or ``"visible"`` (generation network on ``(z, x_visible)``,
        recognition network on ``x_visible`` and ``y`` side by side; runs saved before this
        option existed use it).
    :param z_dims: the hierarchical model's latent sizes, from the data up.
    :param layer_widths: the hierarchical model's deterministic widths below each stochastic layer.
    :param layer_guides: the hierarchical model's guide per layer (default: ``guide`` on each).
    :param num_labels: the semi-supervised model's labelled training images.
    :param labelled_every: the semi-supervised model's rate of labelled batches: 0 visits
        each labelled image once per epoch (Pyro's example); k >= 2 makes every k
        consecutive training batches hold a labelled one, cycling through the labelled images.
    :param aux_loss_multiplier: the semi-supervised model's weight of the auxiliary
        classification term (Kingma et al.'s alpha; Pyro's example uses 46).
    :param conditional: another way to choose a conditional model (``"label"`` is
        ``model="label"``; ``"none"`` leaves ``model`` as it is), as ``--conditional`` does.
    :raises ConfigError: for an unknown name or a size out of range.
    """

    event_shape: tuple[int, ...] = (1, 28, 28)
    z_dim: int = 20
    network: str = "mlp"
    hidden_dims: tuple[int, ...] = (400,)
    activation: str = "relu"
    likelihood: str = "bernoulli"
    guide: str = "diag"
    guide_options: dict[str, Any] = field(default_factory=dict)
    model: str = "vae"
    prior: str = "standard"
    prior_options: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 0
    learned_prior: bool = False
    visible_quadrants: int = 0
    quadrant_layout: str = "pyro"
    z_dims: tuple[int, ...] = (100, 50)
    layer_widths: tuple[int, ...] = (100, 50)
    layer_guides: tuple[str, ...] = ()
    num_labels: int = 0
    labelled_every: int = 0
    aux_loss_multiplier: float = 46.0
    conditional: InitVar[str | None] = None

    def __post_init__(self, conditional: str | None = None) -> None:
        require_choice(self, "model", tuple(MODELS), what="model")
        self.model = resolve_model(self.model, conditional)
        for name in ("event_shape", "hidden_dims", "z_dims", "layer_widths"):
            value = getattr(self, name)
            require(isinstance(value, (list, tuple)) and len(value) > 0, name,
                    f"must be a non-empty sequence of sizes, got {value!r}")
            setattr(self, name, tuple(value))
            require(all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value), name,
                    f"must hold sizes of at least 1, got {value!r}")
        require_count(self, "z_dim", minimum=1, maximum=1 << 16)
        require(math.prod(self.event_shape) * max(self.hidden_dims) <= 1 << 31, "hidden_dims",
                f"{self.hidden_dims} are too wide for datapoints of shape {self.event_shape}")
        require_choice(self, "network", NETWORKS)
        require_choice(self, "activation", tuple(ACTIVATIONS))
        require_choice(self, "likelihood", tuple(LIKELIHOODS))
        require_choice(self, "guide", tuple(GUIDES))
        require(isinstance(self.guide_options, dict), "guide_options", f"must be a mapping, got {self.guide_options!r}")
        self.layer_guides = tuple(self.layer_guides)
        for name in self.layer_guides:
            require(name in GUIDES, "layer_guides", f"names {name!r}, not a known guide; choose from {', '.join(GUIDES)}")
        require_count(self, "num_classes", minimum=0)
        require_count(self, "visible_quadrants", minimum=0)
        require_count(self, "num_labels", minimum=0)
        require_count(self, "labelled_every", minimum=0)
        require(self.labelled_every != 1, "labelled_every",
                "must be 0 (each labelled image once per epoch) or at least 2 (one batch in k labelled), got 1")
        require(isinstance(self.aux_loss_multiplier, (int, float)) and not isinstance(self.aux_loss_multiplier, bool)
                and math.isfinite(self.aux_loss_multiplier) and self.aux_loss_multiplier >= 0, "aux_loss_multiplier",
                f"must be a number of at least 0, got {self.aux_loss_multiplier!r}")
        self.check_prior()

    def check_prior(self) -> None:
        """The prior is known, the model takes it, and its options are its own and in range."""
        require_choice(self, "prior", tuple(PRIORS), what="prior")
        supported = MODELS[self.model].priors
        require(supported is None or self.prior in supported, "prior",
                f"is {self.prior!r}, which the {self.model} model does not take; it takes {', '.join(supported or ())}")
        require(isinstance(self.prior_options, dict), "prior_options", f"must be a mapping, got {self.prior_options!r}")
        entry = PRIORS[self.prior]
        for key in self.prior_options:
            owners = [name for name, other in PRIORS.items() if key in other.options]
            theirs = ", ".join("{prior_options.%s}" % option for option in entry.options) or "none"
            require(key in entry.options, f"prior_options.{key}",
                    f"is not an option of the {self.prior} prior (its options: {theirs}); "
                    + (f"it belongs to the {' and '.join(owners)} prior" if owners else "no prior takes it"))
        for key in entry.counts:
            if key in self.prior_options:
                value = self.prior_options[key]
                require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, f"prior_options.{key}",
                        f"must be an integer of at least 1, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        """The config a ``to_dict`` (a run's ``config.json``) recorded; unknown keys are ignored."""
        known = {k: v for k, v in values.items() if k in {f.name for f in fields(cls)}}
        if "conditional" in values and "model" not in values:  # saved before the model field existed
            known["conditional"] = values["conditional"]
        if "quadrants" in (values.get("model"), values.get("conditional")):
            known.setdefault("quadrant_layout", "visible")  # the only layout before the option existed
        return cls(**known)


def build_pair(config: ModelConfig) -> tuple[nn.Module, nn.Module]:
    """Build ``(model, guide)`` from a config, with freshly initialized weights.

    :raises ValueError: for options the chosen model or guide cannot take.
    """
    return MODELS[config.model].build(config)
