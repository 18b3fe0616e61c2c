"""Pictures of a run: training curves (matplotlib), samples and reconstructions (torchvision)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torchvision.utils import save_image  # noqa: E402

from ppl_vae.registration import registration_skipped  # noqa: E402


def plot_curves(metrics: pd.DataFrame, path: str | Path, columns: tuple[str, ...] = ("train_elbo", "test_elbo")) -> None:
    """Plot ELBO per datapoint against epoch and save to ``path``."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for column in columns:
        if column in metrics:
            ax.plot(metrics["epoch"], metrics[column], marker="o", label=column)
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per datapoint")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@torch.no_grad()
def save_samples(model: nn.Module, like: torch.Tensor, path: str | Path, num_samples: int = 64) -> None:
    """Save a grid of mean images ``E[x|z]`` for z drawn from the prior."""
    save_image(model.generate(num_samples, like).clamp(0, 1), path, nrow=8)


@torch.no_grad()
def save_reconstructions(model: nn.Module, guide: nn.Module, x: torch.Tensor, path: str | Path) -> None:
    """Save originals (upper rows) above their reconstructions ``E[x|z]``, ``z ~ q(z|x)`` (lower rows)."""
    with registration_skipped():
        z = guide(x)
    recon = model.likelihood.mean(model.decoder(z))
    save_image(torch.cat([x, recon]).clamp(0, 1), path, nrow=8)
