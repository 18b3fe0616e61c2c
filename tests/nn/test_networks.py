import pytest
import torch

from ppl_vae.nn.networks import (
    ConvDecoder,
    ConvEncoder,
    MLPDecoder,
    MLPEncoder,
    make_networks,
)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)], ids=["28x28x1", "32x32x3"])
@pytest.mark.parametrize("network", ["mlp", "conv"])
def test_encoder_decoder_shapes(network, shape):
    encoder, decoder = make_networks(network, shape, z_dim=5, hidden_dims=(64, 32))
    x = torch.rand(7, *shape)
    assert encoder(x).shape == (7, encoder.out_dim)
    assert decoder(torch.randn(7, 5)).shape == (7, *shape)
    # extra leading batch dimensions (vectorized particles) pass through
    assert decoder(torch.randn(3, 7, 5)).shape == (3, 7, *shape)


def test_conditions_are_concatenated():
    encoder = MLPEncoder((4,), (8,), condition_dim=3)
    decoder = MLPDecoder(2, (4,), (8,), condition_dim=3)
    assert encoder(torch.rand(5, 4), torch.rand(5, 3)).shape == (5, 8)
    assert decoder(torch.rand(5, 2), torch.rand(5, 3)).shape == (5, 4)
    conv = ConvEncoder((1, 28, 28), 16, condition_dim=10)
    assert conv(torch.rand(2, 1, 28, 28), torch.rand(2, 10)).shape == (2, 16)
    assert ConvDecoder(3, (1, 28, 28), condition_dim=10)(torch.rand(2, 3), torch.rand(2, 10)).shape == (2, 1, 28, 28)


def test_mlp_activation_and_depth():
    encoder = MLPEncoder((10,), (6, 4), activation="tanh")
    linears = [m for m in encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [layer.out_features for layer in linears] == [6, 4]
    assert sum(isinstance(m, torch.nn.Tanh) for m in encoder.modules()) == 2
    assert encoder(torch.full((1, 10), 100.0)).abs().max() <= 1.0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: make_networks("rnn", (1, 28, 28), 2), "unknown network 'rnn'; choose from mlp, conv"),
        (lambda: make_networks("mlp", (1, 28, 28), 2, activation="gelu"), "unknown activation 'gelu'"),
        (lambda: make_networks("conv", (1, 20, 20), 2), "convolutional networks take images of shape"),
    ],
    ids=["network", "activation", "conv-shape"],
)
def test_bad_names_are_clear(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_mlp_decoder_output_bias_is_the_output_where_the_hidden_layers_give_zero():
    decoder = MLPDecoder(2, (1, 2, 3), (8,), activation="tanh")
    out = torch.randn(1, 2, 3)
    decoder.set_output_bias(out)
    torch.nn.init.zeros_(decoder.net[-1].weight)
    torch.testing.assert_close(decoder(torch.randn(4, 2)), out.expand(4, 1, 2, 3), rtol=0, atol=0)


def test_conv_decoder_output_bias_is_the_mean_of_each_channel():
    decoder = ConvDecoder(2, (3, 32, 32))
    out = torch.randn(3, 32, 32)
    decoder.set_output_bias(out)
    torch.nn.init.zeros_(decoder.deconv[-1].weight)
    expected = out.mean(dim=(1, 2))[:, None, None].expand(5, 3, 32, 32)
    torch.testing.assert_close(decoder(torch.randn(5, 2)), expected, rtol=1e-6, atol=1e-6)
