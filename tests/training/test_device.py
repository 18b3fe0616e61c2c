import pytest
import torch
from conftest import requires_cuda

from ppl_vae import ModelConfig, TrainConfig, build_pair, fit, load_dataset
from ppl_vae.training.device import resolve_device


def test_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu0'; choose from auto, cpu, cuda, cuda:N"):
        resolve_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_asked_for_but_absent():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:0")


@pytest.mark.gpu
@requires_cuda
def test_training_on_gpu_keeps_everything_on_the_device():
    data = load_dataset("binarized-mnist-sample", device="cuda")
    data.train, data.test = data.train[:2000], data.test[:500]
    model, guide = build_pair(ModelConfig(z_dim=5, hidden_dims=(100,)))
    model, guide = model.cuda(), guide.cuda()
    metrics = fit(model, guide, data, TrainConfig(epochs=2), progress=False)
    assert metrics["test_elbo"].iloc[1] > metrics["test_elbo"].iloc[0]
    assert all(p.is_cuda for p in [*model.parameters(), *guide.parameters()])
