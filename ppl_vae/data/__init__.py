"""Datasets by name, held as device tensors, and the embedded MNIST sample."""

from ppl_vae.data.datasets import (
    DATASETS,
    DataError,
    Dataset,
    batch_indices,
    load_dataset,
)

__all__ = ["DATASETS", "DataError", "Dataset", "batch_indices", "load_dataset"]
