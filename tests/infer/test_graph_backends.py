import torch
from torch.fx.experimental.proxy_tensor import make_fx

from ppl_vae.infer.graph_backends import SplitAddmm, inductor_function


def layers(x, w1, b1, w2, b2):
    return torch.nn.functional.linear(torch.tanh(torch.nn.functional.linear(x, w1, b1)), w2, b2).sum()


def inputs() -> list[torch.Tensor]:
    torch.manual_seed(0)
    return [torch.randn(16, 8), torch.randn(5, 8), torch.randn(5), torch.randn(3, 5), torch.randn(3)]


def targets(graph: torch.fx.GraphModule) -> list:
    return [node.target for node in graph.graph.nodes if node.op == "call_function"]


def test_split_addmm_replaces_every_addmm_by_mm_and_add():
    graph = make_fx(torch.func.grad(layers, argnums=(1, 2, 3, 4)))(*inputs())
    expected = graph(*inputs())
    count = targets(graph).count(torch.ops.aten.addmm.default)
    assert count >= 2
    SplitAddmm()(graph.graph)
    graph.recompile()
    assert torch.ops.aten.addmm.default not in targets(graph)
    assert targets(graph).count(torch.ops.aten.mm.default) >= count
    for ours, theirs in zip(graph(*inputs()), expected):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


def test_split_addmm_leaves_a_scaled_addmm():
    def scaled(bias, a, b):
        return torch.addmm(bias, a, b, beta=0.5)

    graph = make_fx(scaled)(torch.randn(3), torch.randn(2, 4), torch.randn(4, 3))
    SplitAddmm()(graph.graph)
    assert torch.ops.aten.addmm.default in targets(graph)


def loss_and_gradients(*inputs):
    gradients, loss = torch.func.grad_and_value(layers, argnums=(1, 2, 3, 4))(*inputs)
    return [loss, *gradients]  # flat, as the ELBO's graphs are


def test_the_inductor_function_computes_the_graph():
    graph = make_fx(loss_and_gradients)(*inputs())
    expected = graph(*inputs())
    replay = inductor_function(graph, inputs())
    for ours, theirs in zip(replay(*inputs()), expected, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def watch_compile_fx(monkeypatch, cpp_wrapper_fails: bool = False) -> list[bool]:
    """Record inductor's ``cpp_wrapper`` setting at each ``compile_fx`` call (and make it fail when set)."""
    import torch._inductor.compile_fx as inductor

    original, wrappers = inductor.compile_fx, []

    def watched(*args, **kwargs):
        wrappers.append(torch._inductor.config.cpp_wrapper)
        if cpp_wrapper_fails and torch._inductor.config.cpp_wrapper:
            raise RuntimeError("no C++ shim for this operation")
        return original(*args, **kwargs)

    monkeypatch.setattr(inductor, "compile_fx", watched)
    return wrappers


def test_the_inductor_function_uses_the_cpp_wrapper_on_the_cpu(monkeypatch):
    wrappers = watch_compile_fx(monkeypatch)
    inductor_function(make_fx(loss_and_gradients)(*inputs()), inputs())
    assert wrappers == [True]


def test_the_inductor_function_falls_back_to_the_python_wrapper(monkeypatch, caplog):
    wrappers = watch_compile_fx(monkeypatch, cpp_wrapper_fails=True)
    graph = make_fx(loss_and_gradients)(*inputs())
    expected = graph(*inputs())
    with caplog.at_level("INFO", logger="ppl_vae"):
        replay = inductor_function(graph, inputs())
    assert wrappers == [True, False]
    assert "C++ wrapper failed (no C++ shim for this operation)" in caplog.text
    for ours, theirs in zip(replay(*inputs()), expected, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
