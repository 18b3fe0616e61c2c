"""Datasets by name, held as device tensors, and the embedded MNIST sample."""

from ppl_vae.data.datasets import (
    DATASETS,
    DataError,
    Dataset,
    batch_indices,
    load_dataset,
)
from ppl_vae.data.semi_supervised import SemiSupervisedDataset, semi_supervised

__all__ = ["DATASETS", "DataError", "Dataset", "SemiSupervisedDataset", "batch_indices", "load_dataset", "semi_supervised"]
