"""Why learned priors stall with tanh networks, and what the decoder's output bias changes.

Trains Burda et al.'s one-layer model (784-200-200-50 tanh, Bernoulli) on dynamically
binarized MNIST with plain ``pyro.infer.SVI`` and ``Trace_ELBO`` (Adam lr 1e-3, batch 100),
with the standard, VampPrior and flow priors, each with the decoder's output bias at zero
and at the mean image's log-odds (:meth:`ppl_vae.models.base.Model.initialize_from_data`).
Every ``--every`` steps it records, on 500 test images:

- ``loss``: the mean training loss per image over the last ``--every`` steps (nats);
- ``offset``: the mean over latent coordinates of |the mean of the guide's locs over images|,
  the shift that all codes share;
- ``spread``: the mean over coordinates of the standard deviation of the locs over images,
  how much the codes say about their image;
- ``saturated``: the fraction of the decoder's first tanh units beyond 0.98 in magnitude at a
  draw of z from the guide.

Usage::

    python scripts/prior_drift.py --data-dir ../shared/data --steps 900 --every 150

writes ``results/prior_drift.csv`` and ``results/prior_drift.md``.
"""

import argparse
import platform
from pathlib import Path

import pandas as pd
import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from ppl_vae import ModelConfig, build_pair, load_dataset

ONE_LAYER = {"z_dim": 50, "hidden_dims": (200, 200), "activation": "tanh", "likelihood": "bernoulli"}
PRIORS = {"standard": {}, "vamp": {"num_pseudo_inputs": 100}, "flow": {"num_flows": 2}}


@torch.no_grad()
def codes(model, guide, x: torch.Tensor) -> dict:
    """The offset, spread and decoder saturation of the guide's codes for ``x``."""
    q = guide.base_distribution(x)
    loc = q.mean
    hidden = torch.tanh(model.decoder.net[0](q.sample()))  # the decoder's first tanh layer
    return {"offset": loc.mean(0).abs().mean().item(), "spread": loc.std(0).mean().item(),
            "saturated": (hidden.abs() > 0.98).float().mean().item()}


def run(prior: str, init: bool, data, x_test: torch.Tensor, args) -> list[dict]:
    pyro.clear_param_store()
    torch.manual_seed(args.seed)
    model, guide = build_pair(ModelConfig(**ONE_LAYER, prior=prior, prior_options=PRIORS[prior]))
    if init:
        model.initialize_from_data(data.train)
    svi = SVI(model, guide, Adam({"lr": 1e-3}), Trace_ELBO())
    shuffle = torch.Generator().manual_seed(args.seed)
    batches, rows, losses = iter(()), [], []
    for step in range(1, args.steps + 1):
        x = next(batches, None)
        if x is None:
            batches = iter(data.batches("train", 100, shuffle=True, generator=shuffle))
            x = next(batches)
        losses.append(svi.step(x) / len(x))
        if step % args.every == 0:
            rows.append({"prior": prior, "init_output_bias": init, "step": step,
                         "loss": sum(losses[-args.every:]) / args.every, **codes(model, guide, x_test)})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--every", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    data = load_dataset("binarized-mnist", args.data_dir)
    x_test = torch.bernoulli(data.test[:500], generator=torch.Generator().manual_seed(1))
    rows = [row for prior in PRIORS for init in (False, True) for row in run(prior, init, data, x_test, args)]
    table = pd.DataFrame(rows).round(3)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "prior_drift.csv", index=False)
    (args.out / "prior_drift.md").write_text("\n".join([
        f"# Learned priors, latent drift and the decoder's output bias (cpu; {platform.machine()}, torch {torch.__version__})",
        "",
        f"`python scripts/prior_drift.py --data-dir ../shared/data --steps {args.steps} --every {args.every}`",
        "",
        "784-200-200-50 tanh, Bernoulli, dynamically binarized MNIST; plain `SVI` with `Trace_ELBO`, Adam lr 1e-3, "
        f"batch 100, seed {args.seed}. VampPrior: 100 pseudo-inputs; flow: 2 MAF steps. Columns: see the script's "
        "docstring (loss in nats per image; offset, spread and saturated on 500 test images).",
        "",
        table.to_markdown(index=False),
        "",
    ]))


if __name__ == "__main__":
    main()
