import pytest
import torch

from ppl_vae.infer.finiteness import non_finite_flag, recorded_step_flag, step_flag

BAD = [float("nan"), float("inf"), -float("inf")]
IDS = ["nan", "inf", "-inf"]


def tensors() -> list[torch.Tensor]:
    return [torch.randn(400, 784), torch.randn(20)]


@pytest.mark.parametrize("value", BAD, ids=IDS)
def test_non_finite_flag_finds_one_bad_element(value):
    grads = tensors()
    assert non_finite_flag(grads).item() == 0
    grads[1][7] = value
    assert non_finite_flag(grads).item() == 1
    assert torch.isfinite(grads[0]).all()  # the check leaves finite values as they were


@pytest.mark.parametrize("where", ["none", "loss", "first", "last"])
@pytest.mark.parametrize("value", BAD, ids=IDS)
def test_the_recorded_flag_is_the_eager_flag(value, where):
    loss, grads = torch.tensor(3.0), tensors()
    if where == "loss":
        loss = torch.tensor(value)
    elif where != "none":
        grads[0 if where == "first" else -1].view(-1)[5] = value
    expected = 0.0 if where == "none" else 1.0
    for flag in (step_flag(loss, grads), recorded_step_flag(loss, grads)):
        assert flag.dtype == torch.float32 and flag.shape == () and flag.item() == expected


def test_the_recorded_flag_traces_into_an_inductor_graph():
    """Compiled with the gradients, the flag is still exact."""
    compiled = torch.compile(recorded_step_flag, backend="inductor", fullgraph=True)
    loss, grads = torch.tensor(3.0), tensors()
    assert compiled(loss, grads).item() == 0
    grads[1][3] = float("nan")
    assert compiled(loss, grads).item() == 1
