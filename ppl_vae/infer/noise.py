"""Control over the reparameterization noise of latent sites: common random numbers.

A latent site whose distribution is (an expanded, ``Independent`` or transformed)
``Normal`` or ``MultivariateNormal`` is sampled as ``transform(loc + scale * eps)``, just
as its own ``rsample`` would, but with ``eps`` drawn by the messenger. Two variants differ
only in where ``eps`` comes from:

- :class:`PerDatapointNoise` (evaluation): one generator per datapoint, so per-datapoint
  results do not depend on the batch or chunk size.
- :class:`ShardedNoise` (data-parallel training): every rank draws the noise of the whole
  global batch from the same RNG stream and keeps its own rows, so that together the
  ranks use exactly the draws of a single process on the global batch.

Other sites fall back to the distribution's own sampler. Enter the messenger *outside*
every plate (around the model/guide or the ELBO call), so that it sees each site's
distribution already broadcast to its plates.
"""

import math

import pyro.distributions as dist
import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample


class ReparameterizedNoise(Messenger):
    """Base class: sample Gaussian latent sites with noise from :meth:`noise`.

    Subclasses say which sites they handle (``handles``) and draw the standard normal
    noise (:meth:`noise`); the data dimension of a site is its rightmost batch dimension.
    """

    def handles(self, fn: dist.Distribution) -> bool:
        raise NotImplementedError

    def noise(self, shape: torch.Size, data_dim: int, like: torch.Tensor) -> torch.Tensor:
        """Standard normal noise of ``shape`` (the data dimension at ``data_dim``)."""
        raise NotImplementedError

    def _reparameterized(self, fn: dist.Distribution, data_dim: int) -> torch.Tensor | None:
        if isinstance(fn, dist.Independent):
            return self._reparameterized(fn.base_dist, data_dim)
        if isinstance(fn, dist.TransformedDistribution):
            value = self._reparameterized(fn.base_dist, data_dim)
            if value is not None:
                for transform in fn.transforms:
                    value = transform(value)
            return value
        if isinstance(fn, dist.Normal):
            return fn.loc + self.noise(fn.batch_shape, data_dim, fn.loc) * fn.scale
        if isinstance(fn, dist.MultivariateNormal):
            eps = self.noise(fn.batch_shape + fn.event_shape, data_dim, fn.loc)
            return fn.loc + torch.matmul(fn.scale_tril, eps.unsqueeze(-1)).squeeze(-1)
        return None

    def _pyro_sample(self, msg) -> None:
        if msg["is_observed"] or site_is_subsample(msg) or msg["value"] is not None:
            return
        fn = msg["fn"]
        if fn.batch_shape and self.handles(fn):
            value = self._reparameterized(fn, len(fn.batch_shape) - 1)
            if value is not None:
                msg["value"] = value


class PerDatapointNoise(ReparameterizedNoise):
    """Draw each latent site's noise from one generator per datapoint (evaluation).

    :param generators: one CPU generator per datapoint; a site is handled when its batch
        shape ends in ``(particles, len(generators))`` (enumerated discrete sites may add
        dimensions on the left).
    """

    def __init__(self, generators: list[torch.Generator]) -> None:
        super().__init__()
        self.generators = generators

    def handles(self, fn: dist.Distribution) -> bool:
        return len(fn.batch_shape) >= 2 and fn.batch_shape[-1] == len(self.generators)

    def noise(self, shape: torch.Size, data_dim: int, like: torch.Tensor) -> torch.Tensor:
        return per_datapoint_normal(self.generators, shape, like, data_dim)


def per_datapoint_normal(generators: list[torch.Generator], shape: tuple, like: torch.Tensor,
                         data_dim: int = 1) -> torch.Tensor:
    """Standard normals of ``shape``, whose dimension ``data_dim`` has ``len(generators)``
    datapoints and dimension ``data_dim - 1`` the particles (``(particles, batch, *rest)`` by
    default; enumerated values may add dimensions on the left): datapoint ``i``'s come from
    ``generators[i]``, in ``like``'s dtype and on its device, and are the same however the
    particles are split into calls."""
    # One stream per datapoint, drawn particles first, so that chunking the particles leaves
    # the draws unchanged. Standard normals by the inverse CDF of uniforms, sqrt(2) erfinv(2u - 1),
    # because torch.rand's stream, unlike torch.randn's, does not depend on how it is split into
    # calls. The uniforms have the precision of the data (float32: multiples of 2^-24, one 32-bit
    # draw each, half the generator time of float64) and are moved to the midpoints of their
    # grid, (2k + 1) 2^-(p+1) - 1 for 2u - 1, exact in floating point and strictly inside (-1, 1):
    # the draws are symmetric, finite, and as fine as torch's own float32 sampler (the largest
    # is 5.4 in float32, 8.3 in float64).
    shape = tuple(shape)
    lead, particles, rest = shape[:data_dim - 1], shape[data_dim - 1], shape[data_dim + 1:]
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    half_step = torch.finfo(dtype).eps / 2  # 2^-24 or 2^-53: half the grid of torch.rand
    per_datapoint = [torch.rand((particles, *lead, *rest), generator=g, dtype=dtype) for g in generators]
    draws = torch.stack(per_datapoint, dim=1 + len(lead))  # (particles, *lead, batch, *rest)
    if lead:
        draws = draws.movedim(0, len(lead))  # (*lead, particles, batch, *rest)
    centered = draws.mul_(2.0).sub_(1.0 - half_step) if draws.is_contiguous() else draws.mul(2.0).sub_(1.0 - half_step)
    return centered.erfinv_().mul_(math.sqrt(2.0)).to(dtype=like.dtype, device=like.device)


class ShardedNoise(ReparameterizedNoise):
    """Draw the noise of the whole global batch and keep this rank's rows (training).

    With the same RNG state on every rank, rank ``r`` uses rows ``[start, start + size)``
    of the very tensor a single process would draw for the global batch
    (``torch.empty(shape).normal_()``, as ``rsample`` does).

    :param global_size: datapoints in the global batch.
    :param start: this rank's first row.
    :param size: this rank's rows.
    """

    def __init__(self, global_size: int, start: int, size: int) -> None:
        super().__init__()
        self.global_size, self.start, self.size = global_size, start, size

    def handles(self, fn: dist.Distribution) -> bool:
        return fn.batch_shape[-1] == self.size

    def noise(self, shape: torch.Size, data_dim: int, like: torch.Tensor) -> torch.Tensor:
        full = list(shape)
        full[data_dim] = self.global_size
        eps = torch.empty(full, dtype=like.dtype, device=like.device).normal_()
        return eps.narrow(data_dim, self.start, self.size)
