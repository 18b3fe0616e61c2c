"""TensorBoard logs of a training run: the epoch's metrics as scalars, the model's figures as images.

Uses ``torch.utils.tensorboard``, which needs the optional ``tensorboard`` package
(``pip install "ppl_vae[tensorboard]"``).
"""

from collections.abc import Callable
from pathlib import Path

import torch

SCALARS = ("train_elbo", "valid_elbo", "valid_iwae", "test_elbo", "lr", "beta", "skipped_steps")


class TensorBoardMissing(ImportError):
    """TensorBoard logging was asked for, but the ``tensorboard`` package is not installed."""


def require_tensorboard() -> None:
    """:raises TensorBoardMissing: naming the extra to install, if ``tensorboard`` is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise TensorBoardMissing('TensorBoard logs need the tensorboard package: pip install "ppl_vae[tensorboard]"') \
            from None


class TensorBoardLog:
    """Write each epoch's metrics, and every ``image_every`` epochs the model's figures, to ``log_dir``.

    :param log_dir: where the event files go (created if needed).
    :param model: the model, whose :meth:`~ppl_vae.models.base.Model.figures` are drawn.
    :param guide: its guide.
    :param batch: a fixed test batch ``(images, labels)`` for the figures.
    :param image_every: epochs between two sets of images (the first epoch has one).
    :raises TensorBoardMissing: naming the extra to install.
    """

    def __init__(self, log_dir: str | Path, model, guide, batch: tuple, image_every: int = 5) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))
        self.model, self.guide, self.batch, self.image_every = model, guide, batch, image_every

    def __call__(self, row: dict) -> None:
        """Log one epoch's metrics row (``epoch`` is the step)."""
        epoch = int(row["epoch"])
        for name in SCALARS:
            if name in row:
                self.writer.add_scalar(name, float(row[name]), epoch)
        if epoch == 1 or epoch % self.image_every == 0:
            with torch.no_grad():
                for name, grid in self.model.figures(self.guide, *self.batch).items():
                    self.writer.add_image(name.removesuffix(".png"), grid.cpu(), epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def chain(*callbacks: Callable[[dict], None] | None) -> Callable[[dict], None]:
    """One ``on_epoch`` callback calling each given one in turn."""
    def on_epoch(row: dict) -> None:
        for callback in callbacks:
            if callback is not None:
                callback(row)
    return on_epoch


def test_batch(data, size: int = 32) -> tuple:
    """The first ``size`` test images and their labels: the batch the figures are drawn from."""
    return next(data.batches("test", size, labels=True))
