"""How far Pyro's semi-supervised example moves a weight with its auxiliary SVI on an unlabelled batch.

Pyro's ``examples/vae/ss_vae_M2.py`` runs two ``SVI`` objects that share one ``pyro.optim.Adam``:
the ELBO and the auxiliary classification loss, whose ``step`` it calls on every batch. On an
unlabelled batch the auxiliary model registers the network (``pyro.module``) but scores nothing, so
its loss is 0; every parameter is still captured, and since Pyro's ``zero_grads`` left each gradient
a tensor of zeros, Adam steps every parameter along its first moment. This script reproduces that
on one linear layer and prints both moves.

Usage::

    python scripts/pyro_ss_vae_second_step.py
"""

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam


def main() -> None:
    pyro.set_rng_seed(0)
    net = torch.nn.Linear(3, 1)
    x = torch.randn(8, 3)

    def model(x, y=None):
        pyro.module("net", net)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("obs", dist.Normal(net(x).squeeze(-1), 1.0), obs=torch.zeros(x.shape[0]))

    def model_classify(x, y=None):  # as the example's: scores y only when it is given
        pyro.module("net", net)
        if y is not None:
            with pyro.plate("data", x.shape[0]):
                pyro.sample("y_aux", dist.Normal(net(x).squeeze(-1), 1.0), obs=y)

    def guide(x, y=None):
        pass

    optimizer = Adam({"lr": 1e-3})
    elbo, aux = SVI(model, guide, optimizer, Trace_ELBO()), SVI(model_classify, guide, optimizer, Trace_ELBO())
    before = net.weight.detach().clone()
    elbo.step(x)
    after_elbo = net.weight.detach().clone()
    aux.step(x)  # unlabelled: loss 0
    after_aux = net.weight.detach().clone()
    print(f"lr 1e-3; largest move of a weight: ELBO step {(after_elbo - before).abs().max():.2e}, "
          f"auxiliary step on an unlabelled batch {(after_aux - after_elbo).abs().max():.2e}")


if __name__ == "__main__":
    main()
