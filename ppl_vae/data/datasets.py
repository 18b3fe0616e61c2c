"""Datasets by name, loaded once as tensors on the training device.

Images are float tensors in [0, 1] of shape ``(N, C, H, W)``. Dynamically binarized
datasets keep the grayscale values and are binarized per batch, on the device, by
:meth:`Dataset.batches` (a fresh ``torch.bernoulli`` draw each time), as in
Burda et al. (2015, arXiv:1509.00519).
"""

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch

#: The datasets by name.
DATASETS = (
    "mnist-sample",
    "binarized-mnist-sample",
    "mnist",
    "binarized-mnist",
    "binarized-mnist-static",
    "fashion-mnist",
    "cifar10",
)


class DataError(ValueError):
    """The data cannot be found or loaded; the message says where the files go."""


@dataclass
class Dataset:
    """A dataset held as device tensors.

    :param name: the dataset's name.
    :param train: training images ``(N, *event_shape)`` in [0, 1].
    :param test: test images.
    :param train_labels: class labels ``(N,)`` (int64), or None.
    :param test_labels: class labels, or None.
    :param binarize: draw a fresh binarization of each batch.
    :param num_classes: the number of classes (0 when unlabelled).
    :param valid: an optional validation split (with ``valid_labels``).
    """

    name: str
    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    binarize: bool = False
    num_classes: int = 0
    valid: torch.Tensor | None = None
    valid_labels: torch.Tensor | None = None

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @property
    def is_binary(self) -> bool:
        """Whether batches are binary (statically binarized or binarized per batch)."""
        return self.binarize or bool(((self.train == 0) | (self.train == 1)).all())

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(images, labels)`` of the split ``"train"``, ``"valid"`` or ``"test"``."""
        if name not in ("train", "valid", "test") or getattr(self, name) is None:
            raise DataError(f"dataset {self.name!r} has no {name!r} split")
        return getattr(self, name), getattr(self, f"{name}_labels")

    def num_batches(self, split: str, batch_size: int) -> int:
        """How many batches :meth:`batches` yields for the split."""
        return math.ceil(len(self.split(split)[0]) / batch_size)

    def batches(
        self, split: str, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
        labels: bool = False, start: int = 0,
    ) -> Iterator:
        """Yield batches of the split, binarized per batch when ``binarize`` is set.

        :param shuffle: visit the datapoints in a random order (drawn on the CPU with
            ``generator``, so the order does not depend on the device).
        :param labels: yield ``(images, labels)`` pairs (labels None for unlabelled data).
        :param start: skip the first ``start`` batches without touching any RNG but the
            shuffling generator (to resume in the middle of an epoch).
        """
        images, targets = self.split(split)
        indices = list(batch_indices(len(images), batch_size, shuffle, generator))[start:]
        if not indices:
            return
        # the epoch's order goes to the device in one transfer, not one per batch
        for index in torch.cat(indices).to(images.device).split(batch_size):  # the same batches
            batch = torch.bernoulli(images[index]) if self.binarize else images[index]
            if labels:
                yield batch, None if targets is None else targets[index]
            else:
                yield batch

    def hold_out(self, size: int) -> "Dataset":
        """Move the last ``size`` training datapoints into a validation split (for early stopping).

        :raises DataError: if the dataset has a validation split already, or ``size`` is not
            smaller than the training split.
        """
        if size == 0:
            return self
        if self.valid is not None:
            raise DataError(f"dataset {self.name!r} has its own validation split; do not hold out another")
        if not 0 < size < len(self.train):
            raise DataError(f"validation size must be between 1 and {len(self.train) - 1}, got {size}")
        labelled = self.train_labels is not None
        self.train, self.valid = self.train[:-size], self.train[-size:]
        if labelled:
            self.train_labels, self.valid_labels = self.train_labels[:-size], self.train_labels[-size:]
        return self

    def to(self, device: torch.device | str) -> "Dataset":
        """Move every tensor to ``device``."""
        for field in ("train", "test", "train_labels", "test_labels", "valid", "valid_labels"):
            value = getattr(self, field)
            if value is not None:
                setattr(self, field, value.to(device))
        return self


def batch_indices(
    n: int, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
) -> Iterator[torch.Tensor]:
    """Index tensors covering ``range(n)`` in batches (the last may be smaller)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    yield from order.split(batch_size)


def _images(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, H, W)`` or ``(N, H, W, C)`` -> float ``(N, C, H, W)`` in [0, 1]."""
    x = torch.as_tensor(np.asarray(array))
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    return x.float().div_(255.0)


def _labels(array) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array), dtype=torch.long)


def load_mnist_sample() -> dict[str, torch.Tensor]:
    """The embedded sample: 10,000 MNIST training and 2,000 test digits with labels."""
    with resources.files("ppl_vae").joinpath("assets/mnist_sample.npz").open("rb") as f:
        arrays = dict(np.load(f, allow_pickle=False))
    return {
        "train": _images(arrays["train_images"]),
        "train_labels": _labels(arrays["train_labels"]),
        "test": _images(arrays["test_images"]),
        "test_labels": _labels(arrays["test_labels"]),
    }


_TORCHVISION = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def load_torchvision(name: str, data_dir: str | Path, download: bool = True) -> dict[str, torch.Tensor]:
    """Load a torchvision dataset from ``data_dir`` (torchvision's layout), downloading when absent.

    :raises DataError: when the files are absent and cannot be downloaded.
    """
    import torchvision.datasets

    cls = getattr(torchvision.datasets, _TORCHVISION[name])
    splits = {}
    for split, train in (("train", True), ("test", False)):
        try:
            ds = cls(str(data_dir), train=train, download=False)
        except RuntimeError:
            if not download:
                raise DataError(f"{cls.__name__} not found under {Path(data_dir).resolve()}") from None
            try:
                ds = cls(str(data_dir), train=train, download=True)
            except Exception as error:
                raise DataError(
                    f"{cls.__name__} is not under {Path(data_dir).resolve()} and could not be downloaded "
                    f"({type(error).__name__}); put torchvision's files there (e.g. {cls.__name__}/raw/) "
                    "or pass --data-dir"
                ) from None
        splits[split] = _images(ds.data)
        splits[f"{split}_labels"] = _labels(ds.targets)
    return splits


def load_binarized_mnist_static(data_dir: str | Path) -> dict[str, torch.Tensor]:
    """Larochelle & Murray's static binarization, ``BinarizedMNIST/binarized_mnist_{train,valid,test}.amat``."""
    folder = Path(data_dir) / "BinarizedMNIST"
    splits = {}
    for split in ("train", "valid", "test"):
        path = folder / f"binarized_mnist_{split}.amat"
        if not path.exists():
            raise DataError(
                f"{path} not found: put binarized_mnist_{{train,valid,test}}.amat "
                f"(Larochelle & Murray 2011) in {folder.resolve()} or pass --data-dir"
            )
        values = pd.read_csv(path, sep=" ", header=None, dtype=np.uint8).to_numpy()
        splits[split] = torch.tensor(values).float().reshape(-1, 1, 28, 28)
    return splits


def load_dataset(name: str, data_dir: str | Path = "data", device: torch.device | str = "cpu",
                 validation_size: int = 0) -> Dataset:
    """Load a dataset by name onto ``device``.

    :param name: one of :data:`~ppl_vae.data.datasets.DATASETS`.
    :param data_dir: where torchvision's folders (``MNIST/``, ``FashionMNIST/``,
        ``cifar-10-batches-py/``) and ``BinarizedMNIST/`` live.
    :param validation_size: hold out the last this many training datapoints as the
        validation split (see :meth:`Dataset.hold_out`); ``binarized-mnist-static`` has its own.
    :raises ValueError: for an unknown name; :class:`~ppl_vae.data.datasets.DataError` when files are missing.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    binarize = name.startswith("binarized-") and name != "binarized-mnist-static"
    if name in ("mnist-sample", "binarized-mnist-sample"):
        splits = load_mnist_sample()
    elif name == "binarized-mnist-static":
        splits = load_binarized_mnist_static(data_dir)
    else:
        splits = load_torchvision(name.removeprefix("binarized-"), data_dir)
    num_classes = 10 if "train_labels" in splits else 0
    data = Dataset(name=name, binarize=binarize, num_classes=num_classes, **splits)
    return data.hold_out(validation_size).to(device)
