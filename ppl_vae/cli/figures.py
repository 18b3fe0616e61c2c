"""Pictures of a run: training curves (matplotlib), samples and reconstructions (torchvision)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torchvision.utils import save_image  # noqa: E402

from ppl_vae.nn.registration import registration_skipped  # noqa: E402


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
def save_samples(model: nn.Module, like: torch.Tensor, path: str | Path, num_samples: int = 64,
                 condition: torch.Tensor | None = None, nrow: int = 8) -> None:
    """Save a grid of mean images ``E[x|z]`` for z drawn from the prior (given the condition rows)."""
    condition = () if condition is None else (condition,)
    save_image(model.generate(num_samples, like, *condition).clamp(0, 1), path, nrow=nrow)


@torch.no_grad()
def save_reconstructions(model: nn.Module, guide: nn.Module, x: torch.Tensor, path: str | Path,
                         condition: torch.Tensor | None = None) -> None:
    """Save originals (upper rows) above their reconstructions ``E[x|z]``, ``z ~ q(z|x)`` (lower rows)."""
    condition = () if condition is None else (condition,)
    with registration_skipped():
        z = guide(x, *condition)
    recon = model.observation(z, *condition).mean
    save_image(torch.cat([x, recon]).clamp(0, 1), path, nrow=8)


@torch.no_grad()
def save_completions(model: nn.Module, x_visible: torch.Tensor, truth: torch.Tensor, path: str | Path,
                     num_samples: int = 3) -> None:
    """Quadrant completion: rows of inputs (hidden pixels grey), truths, the baseline's
    prediction and ``num_samples`` CVAE completions, one column per digit."""
    baseline = model.task.merge(x_visible, torch.sigmoid(model.baseline.logits(x_visible)))
    samples = model.predict(x_visible, num_samples)
    rows = [x_visible.clamp(min=0) + 0.5 * (x_visible < 0), truth, baseline, *samples]
    save_image(torch.cat(rows).clamp(0, 1), path, nrow=len(x_visible), padding=2, pad_value=1.0)


@torch.no_grad()
def save_figures(model: nn.Module, guide: nn.Module, data, out: Path) -> None:
    """The pictures of a run: samples and reconstructions; per class for label-conditional
    models; completions for the quadrant model."""
    from ppl_vae.models.cvae import one_hot

    x, labels = next(data.batches("test", 32, labels=True))
    if hasattr(model, "task"):  # quadrant completion
        x_visible, _ = model.task.split(x[:12])
        save_completions(model, x_visible, x[:12], out / "completions.png")
        return
    if getattr(model, "num_classes", 0):
        classes = torch.arange(model.num_classes, device=x.device).repeat_interleave(8)
        save_samples(model, x, out / "samples.png", len(classes), one_hot(classes, model.num_classes, x.dtype))
        save_reconstructions(model, guide, x, out / "reconstructions.png", one_hot(labels, model.num_classes, x.dtype))
        return
    save_samples(model, x, out / "samples.png")
    save_reconstructions(model, guide, x, out / "reconstructions.png")


@torch.no_grad()
def save_interpolations(model: nn.Module, guide: nn.Module, x: torch.Tensor, path: str | Path,
                        num_steps: int = 10) -> None:
    """Save latent interpolations: row i decodes ``E[x|z]`` along the straight line from the
    guide's mean of ``x[2i]`` to that of ``x[2i+1]`` (``num_steps`` points, ends included).

    :param x: ``(2 * rows, *event_shape)`` images, taken in pairs.
    """
    from ppl_vae.infer.closed_form import guide_gaussian

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
    from ppl_vae.infer.closed_form import guide_gaussian

    with registration_skipped():
        loc = torch.cat([guide_gaussian(guide, x[i:i + batch_size])[0] for i in range(0, len(x), batch_size)])
    if loc.shape[-1] != 2:
        raise ValueError(f"a latent scatter needs z_dim = 2, got {loc.shape[-1]}")
    loc, labels = loc.cpu(), labels.cpu()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    points = ax.scatter(loc[:, 0], loc[:, 1], c=labels, cmap="tab10", s=2, alpha=0.6, rasterized=True)
    ax.legend(*points.legend_elements(), title="digit", loc="upper right", fontsize=7, markerscale=0.8)
    ax.set_xlabel("E[z_1 | x]")
    ax.set_ylabel("E[z_2 | x]")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_runs(curves: dict[str, pd.DataFrame], path: str | Path, column: str = "test_elbo",
              title: str = "", span: float = 15.0) -> None:
    """Plot one metrics column (per epoch) of several runs on one figure, one line per run;
    the y axis shows the ``span`` nats below the best value (the first epochs fall off)."""
    fig, ax = plt.subplots(figsize=(6, 4))
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
    plt.close(fig)
