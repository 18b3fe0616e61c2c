"""Control over the reparameterization noise of latent sites: common random numbers.

A latent site whose distribution is (an expanded, ``Independent`` or transformed)
``Normal`` or ``MultivariateNormal`` is sampled as ``transform(loc + scale * eps)``, just
as its own ``rsample`` would, but with ``eps`` drawn by the messenger. Two variants differ
only in where ``eps`` comes from:

- :class:`CounterNoise` (evaluation): each draw is a function of (seed, site, datapoint
  index, particle, coordinate), computed on the data's device by a counter-based generator
  (:func:`counter_normal`), so per-datapoint results do not depend on the batch or chunk size.
- :class:`PerDatapointNoise`: one CPU generator per datapoint (the ``check`` command's
  reference draws).
- :class:`ShardedNoise` (data-parallel training): every rank draws the noise of the whole
  global batch from the same RNG stream and keeps its own rows, so that together the
  ranks use exactly the draws of a single process on the global batch.

Other sites fall back to the distribution's own sampler. Enter the messenger *outside*
every plate (around the model/guide or the ELBO call), so that it sees each site's
distribution already broadcast to its plates.
"""

import math
import zlib

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


# SplitMix64 (Steele, Lea & Flood 2014; Vigna's constants): state k + (c + 1) * GOLDEN, output
# mix64(state). In int64 tensors: products wrap modulo 2^64 as unsigned ones do, and the right
# shifts are made logical by a mask.
_MASK64 = (1 << 64) - 1
GOLDEN, _M1, _M2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _int64(value: int) -> int:
    """``value`` modulo 2^64, as the int64 with the same bits."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def mix64(value: int) -> int:
    """SplitMix64's output function on a Python integer (the reference of :func:`mix64_`)."""
    value &= _MASK64
    value = ((value ^ (value >> 30)) * _M1) & _MASK64
    value = ((value ^ (value >> 27)) * _M2) & _MASK64
    return value ^ (value >> 31)


def _xor_shift_(z: torch.Tensor, shift: int) -> torch.Tensor:
    return z.bitwise_xor_(z.bitwise_right_shift(shift).bitwise_and_((1 << (64 - shift)) - 1))


def mix64_(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's output function on an int64 tensor, in place (bit for bit :func:`mix64`)."""
    return _xor_shift_(_xor_shift_(_xor_shift_(z, 30).mul_(_int64(_M1)), 27).mul_(_int64(_M2)), 31)


def site_key(seed: int, site: str) -> int:
    """The 64-bit key of a seed and a sample site's name."""
    return mix64(mix64(seed) ^ zlib.crc32(site.encode()))


def counter_normal(key: int, indices: torch.Tensor, shape: tuple, like: torch.Tensor, data_dim: int = 1,
                   first_particle: int = 0) -> torch.Tensor:
    """Standard normals of ``shape`` = ``(*lead, particles, batch, *rest)`` (the data at ``data_dim``),
    each a function of the key, its datapoint's index, its particle and its coordinate.

    Datapoint ``indices[b]`` has its own SplitMix64 stream, ``mix64(key + (index + 1) * GOLDEN)``;
    the draw of particle ``first_particle + p``, enumerated value ``l`` and coordinate ``r`` is
    its counter ``(p L + l) R + r`` hashed with that stream (``L``, ``R``: the sizes of ``lead``
    and ``rest``). Particles counted from ``first_particle`` make chunks of particles draw what
    one call would. The top 24 (float32) or 53 (float64) bits, read as a signed integer ``k``,
    give ``2u - 1 = (2k + 1) 2^-bits``, the midpoint of one of ``2^bits`` equal cells, exact and
    strictly inside (-1, 1), and ``sqrt(2) erfinv(2u - 1)`` is the normal. All of it is tensor arithmetic on ``like``'s device.

    :param key: :func:`site_key` of the seed and the site.
    :param indices: ``(batch,)`` int64, each datapoint's index in the whole set.
    :returns: ``shape``, in ``like``'s dtype and on its device.
    """
    shape = tuple(shape)
    lead, particles, batch, rest = shape[:data_dim - 1], shape[data_dim - 1], shape[data_dim], shape[data_dim + 1:]
    device, per_particle = like.device, math.prod(lead) * math.prod(rest)
    streams = indices.to(device=device, dtype=torch.int64).add(1).mul_(_int64(GOLDEN)).add_(_int64(key))
    streams = mix64_(streams)  # (batch,): one stream per datapoint
    counters = torch.arange(first_particle * per_particle + 1, (first_particle + particles) * per_particle + 1,
                            device=device).reshape(particles, math.prod(lead), 1, math.prod(rest))
    # stream + (counter + 1) * GOLDEN, broadcast to (particles, L, batch, R), in one operation
    z = mix64_(torch.add(streams.reshape(1, 1, batch, 1), counters, alpha=_int64(GOLDEN)))
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    bits = 53 if dtype == torch.float64 else 24  # the significand's bits
    # the top bits as a signed integer k in [-2^(bits-1), 2^(bits-1)): (2k + 1) 2^-bits is the
    # midpoint of the k-th of 2^bits equal cells of (-1, 1), exact in floating point
    centered = z.bitwise_right_shift_(64 - bits).to(dtype).mul_(2.0 ** (1 - bits)).add_(2.0 ** -bits)
    normal = centered.erfinv_().mul_(math.sqrt(2.0)).reshape(particles, *lead, batch, *rest)
    if lead:
        normal = normal.movedim(0, len(lead))  # (*lead, particles, batch, *rest)
    return normal.to(like.dtype)


class CounterNoise(ReparameterizedNoise):
    """Draw each latent site's noise as a function of (seed, site, datapoint index, particle,
    coordinate), on the data's device (evaluation).

    Enter it once per chunk of particles of the same datapoints: it counts the particles each
    site has drawn, so that the chunks continue one stream.

    :param seed: the evaluation's seed.
    :param indices: ``(batch,)`` the datapoints' indices in the whole set; a site is handled
        when its batch shape ends in ``(particles, len(indices))``.
    """

    def __init__(self, seed: int, indices: torch.Tensor) -> None:
        super().__init__()
        self.seed, self.indices = seed, indices
        self.particles_drawn: dict[str, int] = {}
        self._site = ""

    def handles(self, fn: dist.Distribution) -> bool:
        return len(fn.batch_shape) >= 2 and fn.batch_shape[-1] == len(self.indices)

    def _pyro_sample(self, msg) -> None:
        self._site = msg["name"]
        super()._pyro_sample(msg)

    def noise(self, shape: torch.Size, data_dim: int, like: torch.Tensor) -> torch.Tensor:
        first = self.particles_drawn.get(self._site, 0)
        self.particles_drawn[self._site] = first + shape[data_dim - 1]
        return counter_normal(site_key(self.seed, self._site), self.indices, shape, like, data_dim, first)
