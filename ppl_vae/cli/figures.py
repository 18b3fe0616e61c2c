"""Pictures of a run: training curves (matplotlib's object-oriented ``Figure``, no pyplot state, so
they work inline in a notebook too), and the model's own image grids (torchvision)."""

import io
from pathlib import Path

import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn
from torchvision.utils import save_image

from ppl_vae.infer.closed_form import guide_gaussian
from ppl_vae.nn.registration import registration_skipped
from ppl_vae.training.checkpoints import atomic_write


def plot_curves(metrics: pd.DataFrame, path: str | Path, columns: tuple[str, ...] = ("train_elbo", "test_elbo")) -> None:
    """Plot ELBO per datapoint against epoch and save to ``path``."""
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    for column in columns:
        if column in metrics:
            ax.plot(metrics["epoch"], metrics[column], marker="o", label=column)
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per datapoint")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_write(path, lambda f: f.write(buffer.getbuffer()))


@torch.no_grad()
def save_figures(model: nn.Module, guide: nn.Module, data, out: Path) -> None:
    """Write the model's pictures of a trained pair (:meth:`ppl_vae.models.base.Model.figures`)
    for a test batch of 32 into ``out``."""
    images, labels = next(data.batches("test", 32, labels=True))
    for name, grid in model.figures(guide, images, labels).items():
        buffer = io.BytesIO()
        save_image(grid, buffer, format="png")
        atomic_write(out / name, lambda f: f.write(buffer.getbuffer()))


@torch.no_grad()
def save_interpolations(model: nn.Module, guide: nn.Module, x: torch.Tensor, path: str | Path,
                        num_steps: int = 10) -> None:
    """Save latent interpolations: row i decodes ``E[x|z]`` along the straight line from the
    guide's mean of ``x[2i]`` to that of ``x[2i+1]`` (``num_steps`` points, ends included).

    :param x: ``(2 * rows, *event_shape)`` images, taken in pairs.
    """
    with registration_skipped():
        loc, _ = guide_gaussian(guide, x)
    start, end = loc[0::2], loc[1::2]
    weights = torch.linspace(0, 1, num_steps, device=x.device, dtype=x.dtype)
    z = start[:, None] + weights[None, :, None] * (end - start)[:, None]  # (rows, steps, z_dim)
    images = model.observation(z.reshape(-1, z.shape[-1])).mean
    save_image(images.clamp(0, 1), path, nrow=num_steps, padding=2, pad_value=1.0)


@torch.no_grad()
def plot_latent_scatter(guide: nn.Module, x: torch.Tensor, labels: torch.Tensor, path: str | Path,
                        batch_size: int = 1000) -> None:
    """Scatter the guide's means E_q[z|x] of a 2-D latent space, coloured by class."""
    with registration_skipped():
        loc = torch.cat([guide_gaussian(guide, x[i:i + batch_size])[0] for i in range(0, len(x), batch_size)])
    if loc.shape[-1] != 2:
        raise ValueError(f"a latent scatter needs z_dim = 2, got {loc.shape[-1]}")
    loc, labels = loc.cpu(), labels.cpu()
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    points = ax.scatter(loc[:, 0], loc[:, 1], c=labels, cmap="tab10", s=2, alpha=0.6, rasterized=True)
    ax.legend(*points.legend_elements(), title="digit", loc="upper right", fontsize=7, markerscale=0.8)
    ax.set_xlabel("E[z_1 | x]")
    ax.set_ylabel("E[z_2 | x]")
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def plot_runs(curves: dict[str, pd.DataFrame], path: str | Path, column: str = "test_elbo",
              title: str = "", span: float = 15.0) -> None:
    """Plot one metrics column (per epoch) of several runs on one figure, one line per run;
    the y axis shows the ``span`` nats below the best value (the first epochs fall off)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    best = -float("inf")
    for name, metrics in curves.items():
        if column in metrics:
            ax.plot(metrics["epoch"], metrics[column], label=name)
            best = max(best, float(metrics[column].max()))
    if best > -float("inf"):
        ax.set_ylim(best - span, best + 0.1 * span)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{column.replace('_', ' ')} (nats per image)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
