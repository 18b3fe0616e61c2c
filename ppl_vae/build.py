"""A model/guide pair described by a small config, and rebuilt from it."""

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from ppl_vae.guides import make_guide
from ppl_vae.models import VAE
from ppl_vae.nets import make_networks


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
    """

    event_shape: tuple[int, ...] = (1, 28, 28)
    z_dim: int = 20
    network: str = "mlp"
    hidden_dims: tuple[int, ...] = (400,)
    activation: str = "relu"
    likelihood: str = "bernoulli"
    guide: str = "diag"
    guide_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
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
    encoder, decoder = make_networks(
        config.network, config.event_shape, config.z_dim, config.hidden_dims, config.activation
    )
    model = VAE(decoder, config.z_dim, config.event_shape, config.likelihood)
    guide = make_guide(config.guide, encoder, config.z_dim, **config.guide_options)
    return model, guide
