"""Each flow step's log|det J| against the autograd Jacobian (float64), over batch shapes."""

import pytest
import torch
from torch.autograd.functional import jacobian

from ppl_vae.guides import IAFGuide, PlanarFlowGuide
from ppl_vae.nn.networks import MLPEncoder

Z_DIM, CONTEXT_DIM = 4, 3


pytestmark = pytest.mark.usefixtures("float64")


def randomized(guide):
    """Move the flows away from their identity initialization."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in guide.named_parameters():
            if name.startswith("flows."):
                param.copy_(0.5 * torch.randn(param.shape, generator=generator))
    return guide


GUIDES = {
    "iaf": lambda: IAFGuide(MLPEncoder((5,), (8,)), Z_DIM, num_flows=2, context_dim=CONTEXT_DIM),
    "iaf-stable": lambda: IAFGuide(MLPEncoder((5,), (8,)), Z_DIM, num_flows=2, context_dim=CONTEXT_DIM, stable=True),
    "planar": lambda: PlanarFlowGuide(MLPEncoder((5,), (8,)), Z_DIM, num_flows=2, context_dim=CONTEXT_DIM),
}


@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)], ids=["scalar", "batch3", "batch2x3"])
@pytest.mark.parametrize("name", list(GUIDES))
def test_log_det_matches_autograd_jacobian(name, batch_shape):
    guide = randomized(GUIDES[name]())
    generator = torch.Generator().manual_seed(1)
    context = torch.randn(batch_shape + (CONTEXT_DIM,), generator=generator)
    x = torch.randn(batch_shape + (Z_DIM,), generator=generator)
    transforms = guide.transforms(context)
    # iaf: flow, reversal, flow, restoring reversal; planar: two flows, no permutation
    assert len(transforms) == (2 if name == "planar" else 4)
    for transform in transforms:
        y = transform(x)
        log_det = transform.log_abs_det_jacobian(x, y)
        assert log_det.shape == batch_shape
        flat_x, flat_log_det = x.reshape(-1, Z_DIM), log_det.reshape(-1)
        for i in range(len(flat_x)):
            index = torch.unravel_index(torch.tensor(i), batch_shape) if batch_shape else ()
            single = guide.transforms(context[index] if batch_shape else context)[transforms.index(transform)]
            jac = jacobian(lambda v: single(v), flat_x[i])
            expected = torch.linalg.slogdet(jac).logabsdet
            torch.testing.assert_close(flat_log_det[i], expected, rtol=0, atol=1e-6)
        x = y


@pytest.mark.parametrize("name", list(GUIDES))
def test_flows_are_not_trivial_after_randomizing(name):
    guide = randomized(GUIDES[name]())
    context, x = torch.randn(3, CONTEXT_DIM), torch.randn(3, Z_DIM)
    y = x
    for transform in guide.transforms(context):
        y = transform(y)
    assert (y - x).abs().max() > 1e-2
