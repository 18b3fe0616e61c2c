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
    from ppl_vae.cvae import one_hot

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
