"""Common random numbers: sharded draws are the rows of the single-process draws."""

from contextlib import nullcontext

import pyro
import pytest
import torch
from conftest import requires_cuda

from ppl_vae import ModelConfig, build_pair
from ppl_vae.infer.noise import CounterNoise, PerDatapointNoise, ShardedNoise, counter_normal, mix64, mix64_, site_key
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


def assert_standard_normal(eps: torch.Tensor) -> None:
    """Mean, variance and skewness within 4 standard errors, and Kolmogorov-Smirnov at 0.1%."""
    eps = eps.double().flatten()
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


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=list(DTYPES))
def test_per_datapoint_noise_is_standard_normal(dtype):
    assert_standard_normal(per_datapoint_noise(range(10), 20_000, dtype))  # 600,000 draws


# ------------------------------------------------------------ counter-based noise (the evaluator's)
def counter_draws(indices, num_particles: int, dtype: torch.dtype, z_dim: int = 3, site: str = "z", first: int = 0,
                  device: str = "cpu") -> torch.Tensor:
    return counter_normal(site_key(0, site), torch.as_tensor(indices), (num_particles, len(indices), z_dim),
                          torch.zeros((), dtype=dtype, device=device), first_particle=first)


def test_mix64_is_splitmix64_bit_for_bit():
    values = [0, 1, 2**31, 2**32 + 7, 2**63 - 1, 2**63, 2**64 - 1, *torch.randint(0, 2**62, (50,)).tolist()]
    as_int64 = torch.tensor([v - 2**64 if v >= 2**63 else v for v in values])
    assert [v & (2**64 - 1) for v in mix64_(as_int64).tolist()] == [mix64(v) for v in values]
    # the published first output of SplitMix64 seeded with 0: mix64(0 + GOLDEN)
    assert mix64(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=list(DTYPES))
def test_counter_noise_does_not_depend_on_chunks_batches_or_order(dtype):
    whole = counter_draws(range(10), 300, dtype)
    assert whole.dtype == dtype
    chunks = torch.cat([counter_draws(range(10), 1, dtype), counter_draws(range(10), 120, dtype, first=1),
                        counter_draws(range(10), 179, dtype, first=121)])
    torch.testing.assert_close(chunks, whole, rtol=0, atol=0)
    shuffled = [7, 2, 9]
    torch.testing.assert_close(counter_draws(shuffled, 300, dtype), whole[:, shuffled], rtol=0, atol=0)
    assert not torch.equal(counter_draws(range(10), 300, dtype, site="z2"), whole)  # another site, other draws


def test_counter_noise_of_enumerated_sites_is_split_invariant():
    key, indices, like = site_key(3, "z"), torch.arange(4), torch.zeros(())
    whole = counter_normal(key, indices, (2, 50, 4, 5), like, data_dim=2)  # (enumerated, particles, batch, dim)
    parts = [counter_normal(key, indices, (2, 20, 4, 5), like, data_dim=2),
             counter_normal(key, indices, (2, 30, 4, 5), like, data_dim=2, first_particle=20)]
    torch.testing.assert_close(torch.cat(parts, dim=1), whole, rtol=0, atol=0)
    assert not torch.equal(whole[0], whole[1])


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=list(DTYPES))
def test_counter_noise_is_standard_normal(dtype):
    assert_standard_normal(counter_draws(range(10), 20_000, dtype))  # 600,000 draws
    # neighbouring counters and neighbouring datapoints are uncorrelated: |r| < 4 / sqrt(n)
    draws = counter_draws(range(10), 20_000, dtype).double()
    for a, b in ((draws[:, :, 0], draws[:, :, 1]), (draws[:-1], draws[1:]), (draws[:, :-1], draws[:, 1:])):
        r = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]
        assert abs(r) < 4 / a.numel() ** 0.5, r


def test_counter_noise_messenger_continues_each_site_over_chunks():
    noise = CounterNoise(0, torch.arange(5))
    like = torch.zeros(())
    first = noise.noise(torch.Size((30, 5, 2)), 1, like)
    second = noise.noise(torch.Size((20, 5, 2)), 1, like)
    whole = counter_normal(site_key(0, ""), torch.arange(5), (50, 5, 2), like)
    torch.testing.assert_close(torch.cat([first, second]), whole, rtol=0, atol=0)
    assert noise.particles_drawn == {"": 50}


@pytest.mark.gpu
@requires_cuda
def test_counter_noise_on_cuda_is_the_cpu_noise():
    for dtype in DTYPES.values():
        cpu = counter_draws(range(10), 1000, dtype)
        cuda = counter_draws(range(10), 1000, dtype, device="cuda")
        assert cuda.device.type == "cuda"
        torch.testing.assert_close(cuda.cpu(), cpu, rtol=0, atol=2e-6 if dtype == torch.float32 else 1e-12)
