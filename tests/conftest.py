from pathlib import Path

import pyro
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def fresh_pyro():
    """Each test starts with an empty param store, fixed seeds and validation on."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    pyro.enable_validation(True)
    yield
    pyro.clear_param_store()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data beside the checkout; tests using it skip when it is absent."""
    if not (SHARED_DATA / "MNIST" / "raw").exists():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def float64():
    """Run the test with float64 as torch's default dtype."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


class IdentityEncoder(torch.nn.Module):
    """Features = x: with a linear-Gaussian model the exact posterior mean is affine in x,
    so the guide's linear heads alone can represent it."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, x):
        return x


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture
def linear_gaussian():
    """A linear-Gaussian VAE (6 -> 3), a poor untrained diagonal guide and 40 datapoints of the model."""
    from ppl_vae import DiagonalNormalGuide
    from ppl_vae.models.linear_gaussian import LinearGaussianVAE

    torch.manual_seed(0)
    model = LinearGaussianVAE(6, 3, init_sigma=0.5)
    with torch.no_grad():
        model.decoder.weight.mul_(2.0)
    guide = DiagonalNormalGuide(IdentityEncoder(6), 3)
    x = model.marginal().sample((40,))
    return model, guide, x
