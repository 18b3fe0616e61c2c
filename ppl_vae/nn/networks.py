"""Plain torch encoders and decoders. No Pyro here.

An *encoder* maps a batch of data ``x`` of shape ``(batch, *event_shape)`` to a
feature vector of shape ``(batch, out_dim)``; guides put their own heads (loc,
scale, flow context, ...) on top, so one encoder body serves every guide.
A *decoder* maps latents ``z`` of shape ``(batch, z_dim)`` to the raw parameters
of the likelihood (logits or locations) of shape ``(batch, *event_shape)``.
"""

from math import prod
from typing import Sequence

import torch
from torch import nn

#: The activations by name.
ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "leaky-relu": nn.LeakyReLU,
}
NETWORKS = ("mlp", "conv")
CONV_SHAPES = ((1, 28, 28), (3, 32, 32))


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module by name.

    :raises ValueError: for an unknown name, listing the valid ones.
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(sizes: Sequence[int], activation: str = "relu") -> nn.Sequential:
    """A multilayer perceptron with ``activation`` after every hidden layer (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(make_activation(activation))
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """Flatten the data and apply an MLP with an activation after each layer.

    :param in_shape: the event shape of one datapoint, e.g. ``(1, 28, 28)``.
    :param hidden_dims: widths of the hidden layers; the last is ``out_dim``.
    :param activation: name of the activation, one of :data:`~ppl_vae.nn.networks.ACTIVATIONS`.
    :param condition_dim: width of an optional condition vector concatenated to the input.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        hidden_dims: Sequence[int] = (400,),
        activation: str = "relu",
        condition_dim: int = 0,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(in_shape)
        self.out_dim = hidden_dims[-1]
        self.net = nn.Sequential(
            mlp((prod(self.in_shape) + condition_dim, *hidden_dims), activation),
            make_activation(activation),
        )

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """:param x: ``(batch, *in_shape)``. :returns: features ``(batch, out_dim)``."""
        h = x.reshape(x.shape[: x.dim() - len(self.in_shape)] + (-1,))
        return self.net(join_condition(h, condition))


class MLPDecoder(nn.Module):
    """An MLP from latents to likelihood parameters of shape ``(batch, *out_shape)``.

    :param z_dim: latent dimension.
    :param out_shape: the event shape of one datapoint.
    :param hidden_dims: widths of the hidden layers, from the latent side.
    :param activation: name of the activation, one of :data:`~ppl_vae.nn.networks.ACTIVATIONS`.
    :param condition_dim: width of an optional condition vector concatenated to ``z``.
    """

    def __init__(
        self,
        z_dim: int,
        out_shape: Sequence[int],
        hidden_dims: Sequence[int] = (400,),
        activation: str = "relu",
        condition_dim: int = 0,
    ) -> None:
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.net = mlp((z_dim + condition_dim, *hidden_dims, prod(self.out_shape)), activation)

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """:param z: ``(batch, z_dim)``. :returns: ``(batch, *out_shape)``."""
        return self.net(join_condition(z, condition)).reshape(z.shape[:-1] + self.out_shape)

    @torch.no_grad()
    def set_output_bias(self, out: torch.Tensor) -> None:
        """Set the last layer's bias to ``out`` (shape ``out_shape``): the output is ``out`` where
        the hidden layers give zero, and near it on average at initialization."""
        self.net[-1].bias.copy_(out.reshape(-1))


def join_condition(h: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
    """Concatenate a condition to features along the last dimension, broadcasting their batch
    dimensions against each other (e.g. over vectorized particles, or the enumerated values of
    a discrete condition)."""
    if condition is None:
        return h
    batch = torch.broadcast_shapes(h.shape[:-1], condition.shape[:-1])
    return torch.cat([h.expand(batch + h.shape[-1:]), condition.expand(batch + condition.shape[-1:])], dim=-1)


def _check_conv_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(shape)
    if shape not in CONV_SHAPES:
        raise ValueError(
            f"convolutional networks take images of shape {' or '.join(map(str, CONV_SHAPES))}, got {shape}"
        )
    return shape


class ConvEncoder(nn.Module):
    """Two stride-2 convolutions and a linear layer, for 28x28x1 or 32x32x3 images.

    :param in_shape: ``(1, 28, 28)`` or ``(3, 32, 32)``.
    :param hidden_dim: width of the output features (``out_dim``).
    :param channels: channels of the two convolutions.
    :param activation: name of the activation.
    :param condition_dim: width of an optional condition vector joined to the features.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        hidden_dim: int = 256,
        channels: tuple[int, int] = (32, 64),
        activation: str = "relu",
        condition_dim: int = 0,
    ) -> None:
        super().__init__()
        self.in_shape = c, h, _ = _check_conv_shape(in_shape)
        self.out_dim = hidden_dim
        self.conv = nn.Sequential(
            nn.Conv2d(c, channels[0], 4, stride=2, padding=1),
            make_activation(activation),
            nn.Conv2d(channels[0], channels[1], 4, stride=2, padding=1),
            make_activation(activation),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Linear(channels[1] * (h // 4) ** 2 + condition_dim, hidden_dim), make_activation(activation)
        )

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """:param x: ``(batch, C, H, W)``. :returns: features ``(batch, out_dim)``."""
        batch_shape = x.shape[:-3]
        h = self.conv(x.reshape((-1,) + self.in_shape)).reshape(batch_shape + (-1,))
        return self.head(join_condition(h, condition))


class ConvDecoder(nn.Module):
    """A linear layer and two stride-2 transposed convolutions, mirroring :class:`ConvEncoder`.

    :param z_dim: latent dimension.
    :param out_shape: ``(1, 28, 28)`` or ``(3, 32, 32)``.
    :param hidden_dim: width of the first linear layer.
    :param channels: channels of the two transposed convolutions' inputs.
    :param activation: name of the activation.
    :param condition_dim: width of an optional condition vector concatenated to ``z``.
    """

    def __init__(
        self,
        z_dim: int,
        out_shape: Sequence[int],
        hidden_dim: int = 256,
        channels: tuple[int, int] = (64, 32),
        activation: str = "relu",
        condition_dim: int = 0,
    ) -> None:
        super().__init__()
        self.out_shape = c, h, _ = _check_conv_shape(out_shape)
        self.start_shape = (channels[0], h // 4, h // 4)
        self.linear = nn.Sequential(
            nn.Linear(z_dim + condition_dim, hidden_dim),
            make_activation(activation),
            nn.Linear(hidden_dim, prod(self.start_shape)),
            make_activation(activation),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(channels[0], channels[1], 4, stride=2, padding=1),
            make_activation(activation),
            nn.ConvTranspose2d(channels[1], c, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """:param z: ``(batch, z_dim)``. :returns: ``(batch, C, H, W)``."""
        z = join_condition(z, condition)
        batch_shape = z.shape[:-1]
        h = self.linear(z).reshape((-1,) + self.start_shape)
        return self.deconv(h).reshape(batch_shape + self.out_shape)

    @torch.no_grad()
    def set_output_bias(self, out: torch.Tensor) -> None:
        """Set the last convolution's bias, one per channel, to ``out`` ``(C, H, W)`` averaged over pixels."""
        self.deconv[-1].bias.copy_(out.mean(dim=(-2, -1)))


def make_networks(
    network: str,
    event_shape: Sequence[int],
    z_dim: int,
    hidden_dims: Sequence[int] = (400,),
    activation: str = "relu",
    condition_dim: int = 0,
) -> tuple[nn.Module, nn.Module]:
    """Build a matching ``(encoder, decoder)`` pair by network name.

    :param network: ``"mlp"`` or ``"conv"``. For ``"conv"`` the last entry of
        ``hidden_dims`` is the width of the linear layers.
    :returns: ``(encoder, decoder)``; the decoder mirrors ``hidden_dims``.
    """
    if network == "mlp":
        encoder = MLPEncoder(event_shape, hidden_dims, activation, condition_dim)
        decoder = MLPDecoder(z_dim, event_shape, tuple(reversed(hidden_dims)), activation, condition_dim)
    elif network == "conv":
        encoder = ConvEncoder(event_shape, hidden_dims[-1], activation=activation, condition_dim=condition_dim)
        decoder = ConvDecoder(z_dim, event_shape, hidden_dims[-1], activation=activation, condition_dim=condition_dim)
    else:
        raise ValueError(f"unknown network {network!r}; choose from {', '.join(NETWORKS)}")
    return encoder, decoder
