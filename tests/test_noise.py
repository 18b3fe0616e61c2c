"""Common random numbers: sharded draws are the rows of the single-process draws."""

from contextlib import nullcontext

import pyro
import pytest
import torch

from ppl_vae import ModelConfig, build_pair
from ppl_vae.noise import ShardedNoise
from ppl_vae.registration import registration_skipped

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
