"""A model/guide pair described by a small config, and rebuilt from it."""

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from ppl_vae.models.cvae import QUADRANT_LAYOUTS, LabelConditionalVAE, MergedQuadrantEncoder, QuadrantBaseline, QuadrantCVAE
from ppl_vae.guides import make_guide
from ppl_vae.models.vae import VAE
from ppl_vae.nn.networks import MLPEncoder, make_networks

CONDITIONALS = ("none", "label", "quadrants")


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
    :param conditional: ``"none"``, ``"label"`` (:class:`~ppl_vae.models.cvae.LabelConditionalVAE`)
        or ``"quadrants"`` (:class:`~ppl_vae.models.cvae.QuadrantCVAE`).
    :param num_classes: classes of the label-conditional model.
    :param learned_prior: the label-conditional model learns p(z|y).
    :param visible_quadrants: 1, 2 or 3 for the quadrant model.
    :param quadrant_layout: the quadrant model's networks: ``"pyro"`` (generation network
        on z alone, recognition network on the digit with the hidden pixels filled in, as
        in Pyro's example) or ``"visible"`` (generation network on ``(z, x_visible)``,
        recognition network on ``x_visible`` and ``y`` side by side; runs saved before this
        option existed use it).
    """

    event_shape: tuple[int, ...] = (1, 28, 28)
    z_dim: int = 20
    network: str = "mlp"
    hidden_dims: tuple[int, ...] = (400,)
    activation: str = "relu"
    likelihood: str = "bernoulli"
    guide: str = "diag"
    guide_options: dict[str, Any] = field(default_factory=dict)
    conditional: str = "none"
    num_classes: int = 0
    learned_prior: bool = False
    visible_quadrants: int = 0
    quadrant_layout: str = "pyro"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        if known.get("conditional") == "quadrants":
            known.setdefault("quadrant_layout", "visible")  # the only layout before the option existed
        for key in ("event_shape", "hidden_dims"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


def build_pair(config: ModelConfig) -> tuple[VAE, nn.Module]:
    """Build ``(model, guide)`` from a config, with freshly initialized weights.

    :raises ValueError: for unknown names or invalid sizes.
    """
    if config.z_dim < 1:
        raise ValueError(f"z_dim must be at least 1, got {config.z_dim}")
    if config.conditional not in CONDITIONALS:
        raise ValueError(f"unknown conditional model {config.conditional!r}; choose from {', '.join(CONDITIONALS)}")
    if config.conditional == "quadrants":
        return build_quadrant_pair(config)
    condition_dim = config.num_classes if config.conditional == "label" else 0
    if config.conditional == "label" and config.num_classes < 2:
        raise ValueError(f"label conditioning needs at least 2 classes, got {config.num_classes}")
    encoder, decoder = make_networks(
        config.network, config.event_shape, config.z_dim, config.hidden_dims, config.activation, condition_dim
    )
    if config.conditional == "label":
        model = LabelConditionalVAE(decoder, config.z_dim, config.event_shape, config.num_classes,
                                    config.likelihood, config.learned_prior)
    else:
        model = VAE(decoder, config.z_dim, config.event_shape, config.likelihood)
    guide = make_guide(config.guide, encoder, config.z_dim, **config.guide_options)
    return model, guide


def build_quadrant_pair(config: ModelConfig) -> tuple[QuadrantCVAE, nn.Module]:
    """The quadrant-completion CVAE (its untrained baseline inside) and its recognition guide."""
    if tuple(config.event_shape) != (1, 28, 28) or config.network != "mlp":
        raise ValueError("quadrant completion needs 28x28x1 images and the mlp network")
    if config.quadrant_layout not in QUADRANT_LAYOUTS:
        raise ValueError(f"unknown quadrant layout {config.quadrant_layout!r}; choose from {', '.join(QUADRANT_LAYOUTS)}")
    baseline = QuadrantBaseline(config.visible_quadrants, config.hidden_dims, config.likelihood)
    pyro_layout = config.quadrant_layout == "pyro"
    model = QuadrantCVAE(baseline, config.z_dim, config.hidden_dims, decoder_sees_visible=not pyro_layout)
    if pyro_layout:
        encoder = MergedQuadrantEncoder(baseline.task, config.hidden_dims, config.activation)
    else:
        encoder = MLPEncoder(config.event_shape, config.hidden_dims, config.activation,
                             condition_dim=baseline.task.num_hidden)
    return model, make_guide(config.guide, encoder, config.z_dim, **config.guide_options)
