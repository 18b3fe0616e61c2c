"""Common random numbers: sharded draws are the rows of the single-process draws."""

from contextlib import nullcontext

import pyro
import pytest
import torch

from ppl_vae import ModelConfig, build_pair
from ppl_vae.infer.noise import PerDatapointNoise, ShardedNoise
from ppl_vae.nn.registration import registration_skipped

GUIDES = {"diag": {}, "full-rank": {}, "iaf": {"num_flows": 2, "hidden_dims": (8,)}, "planar": {"num_flows": 2}}


@pytest.mark.parametrize("num_particles", [1, 3], ids=["one-particle", "vectorized-particles"])
@pytest.mark.parametrize("guide_name", GUIDES, ids=list(GUIDES))
def test_shards_of_the_noise_are_rows_of_the_single_draw(guide_name, num_particles):
    _, guide = build_pair(ModelConfig(event_shape=(1, 6, 6), z_dim=3, hidden_dims=(8,), guide=guide_name,
                                      guide_options=GUIDES[guide_name]))
    x = torch.rand(7, 1, 6, 6)

    def draw(rows: slice, sharded: bool) -> torch.Tensor:
        pyro.set_rng_seed(1)
        noise = ShardedNoise(len(x), rows.start, rows.stop - rows.start) if sharded else nullcontext()
        with registration_skipped(), noise, pyro.plate("particles", num_particles, dim=-2):  # noise outside plates
            return guide(x[rows])

    single = draw(slice(0, 7), sharded=False)
    shards = torch.cat([draw(slice(0, 4), sharded=True), draw(slice(4, 7), sharded=True)], dim=-2)
    torch.testing.assert_close(shards, single, rtol=1e-6, atol=1e-6)
    # without the messenger, a shard's draws are not the single draw's rows
    assert not torch.allclose(draw(slice(4, 7), sharded=False), single[..., 4:7, :])


DTYPES = {"float32": torch.float32, "float64": torch.float64}


def per_datapoint_noise(seeds, num_particles: int, dtype: torch.dtype, z_dim: int = 3) -> torch.Tensor:
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    return PerDatapointNoise(generators).noise(torch.Size((num_particles, len(seeds), z_dim)), 1,
                                               torch.zeros((), dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=list(DTYPES))
def test_per_datapoint_noise_does_not_depend_on_chunks_or_batches(dtype):
    whole = per_datapoint_noise([5, 6, 7], 100, dtype)
    assert whole.dtype == dtype
    for seed, column in zip([5, 6, 7], whole.unbind(1)):  # one datapoint at a time ...
        generator = torch.Generator().manual_seed(seed)
        noise = PerDatapointNoise([generator])
        chunks = [noise.noise(torch.Size((size, 1, 3)), 1, torch.zeros((), dtype=dtype)) for size in (1, 33, 66)]
        torch.testing.assert_close(torch.cat(chunks)[:, 0], column, rtol=0, atol=0)  # ... in chunks of particles


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=list(DTYPES))
def test_per_datapoint_noise_is_standard_normal(dtype):
    eps = per_datapoint_noise(range(10), 20_000, dtype).double().flatten()  # 600,000 draws
    n = len(eps)
    assert torch.isfinite(eps).all()
    assert abs(eps.mean()) < 4 / n**0.5
    assert abs(eps.var() - 1) < 4 * (2 / n) ** 0.5
    assert abs((eps**3).mean()) < 4 * (15 / n) ** 0.5  # skewness; Var(eps^3) = 15
    # Kolmogorov-Smirnov against N(0, 1); 1.95 / sqrt(n) is the 0.1% critical value
    sorted_eps = eps.sort().values
    cdf = torch.special.ndtr(sorted_eps)
    ranks = torch.arange(1, n + 1, dtype=torch.float64)
    statistic = torch.maximum(ranks / n - cdf, cdf - (ranks - 1) / n).max()
    assert statistic < 1.95 / n**0.5, statistic
