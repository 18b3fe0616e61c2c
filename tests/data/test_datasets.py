import pytest
import torch

from ppl_vae.data.datasets import DataError, batch_indices, load_dataset


def test_embedded_sample():
    data = load_dataset("mnist-sample")
    assert data.train.shape == (10_000, 1, 28, 28) and data.test.shape == (2_000, 1, 28, 28)
    assert data.train.dtype == torch.float32
    assert data.train.min() == 0 and data.train.max() == 1
    assert not data.is_binary and not data.binarize
    assert data.num_classes == 10 and set(data.train_labels.tolist()) == set(range(10))
    # MNIST's first training digit is a 5, its first test digit a 7
    assert data.train_labels[0] == 5 and data.test_labels[0] == 7


def test_dynamic_binarization_draws_fresh_binary_batches():
    data = load_dataset("binarized-mnist-sample")
    assert data.is_binary
    first = next(data.batches("test", 100))
    second = next(data.batches("test", 100))
    assert ((first == 0) | (first == 1)).all()
    assert not torch.equal(first, second)
    # each pixel is 1 with the grayscale value as probability: mean over 200 draws agrees
    draws = torch.stack([torch.bernoulli(data.test[:50]) for _ in range(200)]).mean(0)
    std_error = (data.test[:50] * (1 - data.test[:50]) / 200).sqrt()
    assert ((draws - data.test[:50]).abs() <= 5 * std_error + 1e-6).all()


def test_batches_cover_every_datapoint_once():
    indices = torch.cat(list(batch_indices(1003, 100, shuffle=True, generator=torch.Generator().manual_seed(0))))
    assert sorted(indices.tolist()) == list(range(1003))
    sizes = [len(b) for b in batch_indices(1003, 100)]
    assert sizes == [100] * 10 + [3]


def test_bad_names_and_sizes():
    with pytest.raises(ValueError, match="unknown dataset 'svhn'; choose from mnist-sample"):
        load_dataset("svhn")
    with pytest.raises(ValueError, match="batch size must be at least 1"):
        list(batch_indices(10, 0))
    with pytest.raises(DataError, match="has no 'valid' split"):
        load_dataset("mnist-sample").split("valid")


@pytest.mark.parametrize("name", ["mnist", "binarized-mnist-static"])
def test_missing_files_say_where_they_go(name, tmp_path):
    with pytest.raises(DataError, match=str(tmp_path)):
        load_dataset(name, tmp_path)


def test_full_mnist(shared_data):
    data = load_dataset("binarized-mnist", shared_data)
    assert data.train.shape == (60_000, 1, 28, 28) and data.test.shape == (10_000, 1, 28, 28)
    assert data.binarize and data.is_binary
    sample = load_dataset("mnist-sample")
    torch.testing.assert_close(data.train[:10_000], sample.train, rtol=0, atol=0)


def test_static_binarized_mnist(shared_data):
    if not (shared_data / "BinarizedMNIST").exists():
        pytest.skip("BinarizedMNIST absent")
    data = load_dataset("binarized-mnist-static", shared_data)
    assert data.train.shape == (50_000, 1, 28, 28)
    assert data.valid.shape == (10_000, 1, 28, 28) and data.test.shape == (10_000, 1, 28, 28)
    assert data.is_binary and not data.binarize and data.num_classes == 0
