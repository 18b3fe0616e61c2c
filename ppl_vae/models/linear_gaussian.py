"""The linear-Gaussian VAE (probabilistic PCA), whose likelihood and posterior are exact.

z ~ N(0, I_d), x | z ~ N(W z + b, sigma^2 I_D), so x ~ N(b, W W^T + sigma^2 I) and
p(z|x) = N(M^{-1} W^T (x - b), sigma^2 M^{-1}) with M = W^T W + sigma^2 I
(Tipping & Bishop 1999, "Probabilistic principal component analysis", JRSS B 61(3)).
It is an ordinary :class:`~ppl_vae.models.vae.VAE` (a linear decoder and the ``gaussian``
likelihood), so everything in the library applies to it, and its exact quantities
check the ELBO, its gradients and the importance-sampled likelihood.
"""

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppl_vae.models.vae import VAE
from ppl_vae.nn.likelihoods import GaussianLikelihood


class LinearGaussianVAE(VAE):
    """Probabilistic PCA as a Pyro model: a linear decoder and a learned global noise scale.

    :param data_dim: D, the dimension of x.
    :param z_dim: d, the latent dimension.
    :param init_sigma: the initial noise scale sigma.
    """

    def __init__(self, data_dim: int, z_dim: int, init_sigma: float = 1.0) -> None:
        super().__init__(nn.Linear(z_dim, data_dim), z_dim, (data_dim,), GaussianLikelihood((data_dim,), init_scale=init_sigma))

    def linear_gaussian_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(W, b, sigma)``: ``(D, d)``, ``(D,)`` and a scalar."""
        return self.decoder.weight, self.decoder.bias, self.likelihood.log_scale.exp()

    def marginal(self) -> dist.MultivariateNormal:
        """The exact marginal p(x) = N(b, W W^T + sigma^2 I)."""
        weight, bias, sigma = self.linear_gaussian_params()
        eye = torch.eye(len(bias), dtype=bias.dtype, device=bias.device)
        return dist.MultivariateNormal(bias, covariance_matrix=weight @ weight.T + sigma**2 * eye)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """The exact log p(x) per datapoint. :param x: ``(batch, D)``. :returns: ``(batch,)``."""
        return self.marginal().log_prob(x)

    def posterior(self, x: torch.Tensor) -> dist.MultivariateNormal:
        """The exact posterior p(z|x), batch shape ``(batch,)``, event shape ``(d,)``."""
        weight, bias, sigma = self.linear_gaussian_params()
        eye = torch.eye(self.z_dim, dtype=bias.dtype, device=bias.device)
        precision_scaled = weight.T @ weight + sigma**2 * eye  # M
        covariance = sigma**2 * torch.linalg.inv(precision_scaled)
        loc = torch.linalg.solve(precision_scaled, weight.T @ (x - bias).T).T
        return dist.MultivariateNormal(loc, covariance_matrix=covariance.expand(len(x), -1, -1))

    @classmethod
    def maximum_likelihood(cls, x: torch.Tensor, z_dim: int) -> "LinearGaussianVAE":
        """The maximum-likelihood model for a data set (Tipping & Bishop 1999, eqs. 7-8).

        ``b`` is the data mean, ``sigma^2`` the mean of the discarded eigenvalues of the
        sample covariance and ``W = U_d (Lambda_d - sigma^2 I)^{1/2}``.

        :param x: ``(N, D)`` with ``D > z_dim``.
        """
        n, data_dim = x.shape
        mean = x.mean(0)
        covariance = (x - mean).T @ (x - mean) / n
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
        sigma2 = eigenvalues[z_dim:].mean()
        weight = eigenvectors[:, :z_dim] * (eigenvalues[:z_dim] - sigma2).clamp_min(0).sqrt()
        model = cls(data_dim, z_dim).to(dtype=x.dtype, device=x.device)
        with torch.no_grad():
            model.decoder.weight.copy_(weight)
            model.decoder.bias.copy_(mean)
            model.likelihood.log_scale.copy_(0.5 * sigma2.log())
        return model


class ExactPosteriorGuide(nn.Module):
    """The guide q(z|x) = p(z|x) of a :class:`LinearGaussianVAE`: its ELBO is log p(x).

    :param model: the linear-Gaussian model whose posterior to use.
    """

    def __init__(self, model: LinearGaussianVAE) -> None:
        super().__init__()
        self.model = model

    def distribution(self, x: torch.Tensor) -> dist.MultivariateNormal:
        return self.model.posterior(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # no pyro.module call: the parameters are the model's, registered by the model
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("z", self.distribution(x))
