"""A dataset for semi-supervised learning: the labels of a balanced subset of the training split.

Kingma et al. (2014, arXiv:1406.5298) train on N labelled images and treat the rest of
the training split as unlabelled. :func:`semi_supervised` draws the N labelled images with
a seed, balanced over the classes. Training batches are either all labelled or all
unlabelled (labels None), interleaved evenly through each epoch. By default every image,
labelled or not, is visited once per epoch, as in Pyro's ``examples/vae/ss_vae_M2.py``;
with 100 labels and batches of 200 that is one labelled step in 251. ``labelled_every=k``
instead makes every k-th step a labelled one, cycling through the labelled images
(reshuffled on each pass), as Kingma et al.'s own code feeds labelled data to every
update; an epoch is still one pass over the unlabelled images.
The labels of the other splits are hidden from the model (``split`` gives None), so the
ELBO and log p(x) of the test and validation splits sum the label out; the true labels
stay in ``test_labels`` and ``valid_labels`` for the classifier's accuracy.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass, fields

import torch

from ppl_vae.data.datasets import DataError, Dataset, batch_indices


@dataclass
class SemiSupervisedDataset(Dataset):
    """A :class:`~ppl_vae.data.datasets.Dataset` whose training labels are known on ``labelled`` only.

    :param labelled: the indices of the labelled training images.
    :param labelled_every: 0: each labelled image once per epoch; k >= 2: every k
        consecutive training batches hold a labelled one, the labelled images cycled as often
        as that takes.
    """

    labelled: torch.Tensor | None = None
    labelled_every: int = 0

    def unlabelled_batches(self, batch_size: int) -> int:
        """How many unlabelled batches an epoch holds."""
        return math.ceil((len(self.train) - len(self.labelled)) / batch_size)

    def labelled_batches(self, batch_size: int) -> int:
        """How many labelled batches an epoch holds."""
        once = math.ceil(len(self.labelled) / batch_size)
        if not self.labelled_every:
            return once
        return max(once, math.ceil(self.unlabelled_batches(batch_size) / (self.labelled_every - 1)))

    @property
    def unlabelled(self) -> torch.Tensor:
        mask = torch.ones(len(self.train), dtype=torch.bool, device=self.labelled.device)
        mask[self.labelled] = False
        return mask.nonzero().squeeze(-1)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(images, None)`` for every split but the training one: the model does not see those labels."""
        images, labels = super().split(name)
        return images, labels if name == "train" else None

    def num_batches(self, split: str, batch_size: int) -> int:
        if split != "train":
            return super().num_batches(split, batch_size)
        return self.labelled_batches(batch_size) + self.unlabelled_batches(batch_size)

    def batches(self, split: str, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                labels: bool = False, start: int = 0) -> Iterator:
        """Training batches: labelled ones (with their labels) spread evenly among the unlabelled
        ones (labels None); other splits as for every dataset, without labels."""
        if split != "train":
            yield from super().batches(split, batch_size, shuffle, generator, labels, start)
            return
        wanted, labelled = self.labelled_batches(batch_size), []
        while len(labelled) < wanted:  # whole passes over the labelled images, each in a new order
            labelled += [self.labelled[i.to(self.labelled.device)] for i in
                         batch_indices(len(self.labelled), batch_size, shuffle, generator)]
        labelled = labelled[:wanted]
        unlabelled_index = self.unlabelled
        unlabelled = [unlabelled_index[i.to(unlabelled_index.device)] for i in
                      batch_indices(len(unlabelled_index), batch_size, shuffle, generator)]
        total = len(labelled) + len(unlabelled)
        positions = {round((j + 0.5) * total / len(labelled) - 0.5) for j in range(len(labelled))}
        order, l_iter, u_iter = [], iter(labelled), iter(unlabelled)
        for position in range(total):
            order.append((next(l_iter), True) if position in positions else (next(u_iter), False))
        for index, is_labelled in order[start:]:
            index = index.to(self.train.device)
            batch = torch.bernoulli(self.train[index]) if self.binarize else self.train[index]
            if labels:
                yield batch, self.train_labels[index] if is_labelled else None
            else:
                yield batch

    def to(self, device: torch.device | str) -> "SemiSupervisedDataset":
        super().to(device)
        self.labelled = self.labelled.to(device)
        return self


def semi_supervised(data: Dataset, num_labels: int, seed: int = 0, labelled_every: int = 0) -> SemiSupervisedDataset:
    """The dataset with the labels of ``num_labels`` training images kept, balanced over the classes.

    Each class gets ``num_labels // num_classes`` images, and the first ``num_labels %
    num_classes`` classes one more, drawn without replacement with ``seed``.
    ``labelled_every`` is the :class:`SemiSupervisedDataset`'s, checked where the model's
    config is built.

    :raises DataError: for a dataset without labels, or ``num_labels`` smaller than the number
        of classes or larger than the training split (or a class).
    """
    if data.train_labels is None or data.num_classes == 0:
        raise DataError(f"semi-supervised training needs a dataset with labels; {data.name!r} has none "
                        "(choose from mnist-sample, mnist, fashion-mnist, cifar10 and their binarized forms)")
    if not data.num_classes <= num_labels <= len(data.train):
        raise DataError(f"--labels must be between the {data.num_classes} classes and the {len(data.train)} training "
                        f"images of {data.name!r}, got {num_labels}")
    generator = torch.Generator().manual_seed(seed)
    labels, chosen = data.train_labels.cpu(), []
    for c in range(data.num_classes):
        members = (labels == c).nonzero().squeeze(-1)
        wanted = num_labels // data.num_classes + (c < num_labels % data.num_classes)
        if wanted > len(members):
            raise DataError(f"--labels {num_labels} asks for {wanted} images of class {c}, which has {len(members)}")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:wanted]])
    labelled = torch.cat(chosen).sort().values
    values = {f.name: getattr(data, f.name) for f in fields(Dataset)}
    return SemiSupervisedDataset(**values, labelled=labelled, labelled_every=labelled_every).to(data.train.device)
