"""The graph passes of ppl_vae.infer.graph_passes on small graphs recorded with make_fx."""

import torch
from torch.fx.experimental.proxy_tensor import make_fx

from ppl_vae.infer.graph_passes import as_python_function, remove_redundant_operations


def test_redundant_operations_are_removed_unless_written_in_place():
    def f(x, y, z):
        a = (x / 1 + 0) * 1
        b = y.t().t().expand(3, 4)
        c = y * 1  # written in place below: kept
        c.add_(1.0)
        d = x.exp() + x.exp()  # one exp
        e = z.view(12) * 2  # written in place below: stays
        f1 = z.sin()
        e.add_(0.0)
        z.view(12).mul_(3.0)  # z changes through a view: the two sines differ
        f2 = z.sin()
        return a + b + c + d + e.view(3, 4) + f1 - f2

    x, y, z = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)
    graph = make_fx(f, tracing_mode="real")(x, y, z.clone())
    before = len(graph.graph.nodes)
    simplified = remove_redundant_operations(graph)
    torch.testing.assert_close(simplified(x, y, z.clone()), f(x, y, z.clone()), rtol=0, atol=0)
    targets = [n.target for n in simplified.graph.nodes if n.op == "call_function"]
    assert torch.ops.aten.div.Tensor not in targets and torch.ops.aten.t.default not in targets
    assert targets.count(torch.ops.aten.exp.default) == 1
    assert targets.count(torch.ops.aten.sin.default) == 2  # x changed in between
    assert targets.count(torch.ops.aten.mul.Tensor) == 2  # y * 1, written in place, and the view's * 2 stay
    assert len(simplified.graph.nodes) < before


def test_python_function_of_a_graph_matches_the_graph():
    """Constants of every kind (a tensor, a dtype, a device, inf), a multi-output operator, flat outputs."""
    def f(x, y):
        values, indices = torch.max(x, dim=0)
        clamped = x.clamp(max=float("inf")) + torch.tensor([1.0, 2.0, 3.0])
        return [values * y, indices.to(torch.float64), clamped.sum() + torch.zeros((), device=x.device)]

    x, y = torch.randn(4, 3), torch.randn(3)
    graph = make_fx(f, tracing_mode="real")(x, y)
    replay = as_python_function(graph)
    for expected, actual in zip(f(x, y), replay(x, y)):
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)
        assert actual.dtype == expected.dtype
