"""Two things done to a ``torch.fx`` graph of aten operations: simplify it, and turn it into Python.

:mod:`ppl_vae.infer.compiled` records Trace_ELBO's loss and gradient with ``make_fx``; the recorded
graph repeats work (autograd's backward of ``x / n`` with ``n = 1``, the loss and its
surrogate computed apart) that :func:`remove_redundant_operations` removes, and
:func:`as_python_function` replays it with less overhead per operation than the code FX
writes.
"""

import math
from typing import Callable

import torch
from torch.fx import GraphModule, Node
from torch.utils._pytree import tree_leaves

aten = torch.ops.aten

_NEUTRAL = {aten.add.Tensor: 0, aten.sub.Tensor: 0, aten.mul.Tensor: 1, aten.div.Tensor: 1,
            aten.add.Scalar: 0, aten.sub.Scalar: 0, aten.mul.Scalar: 1, aten.div.Scalar: 1,
            aten.pow.Tensor_Scalar: 1}


def remove_redundant_operations(graph: GraphModule) -> GraphModule:
    """Remove operations that return their input unchanged or repeat an earlier one, in place.

    ``x + 0``, ``x - 0``, ``x * 1``, ``x / 1``, ``x ** 1``, ``alias(x)``, ``t(t(x))`` and
    views and expansions to the shape, dtype and strides ``x`` has are replaced by ``x``; a
    deterministic operation already applied to the same inputs is replaced by the earlier
    result (common subexpressions: Trace_ELBO computes the loss and its surrogate apart);
    results nobody uses are dropped. Nothing that an in-place operation writes to is touched.
    """
    changed = True
    while changed:
        changed = False
        written = _written(graph.graph)
        seen = {}
        for node in list(graph.graph.nodes):
            if node in written or any(a in written for a in node.all_input_nodes):
                continue
            source = _unchanged_input(node)
            if source is None and _is_pure(node):
                source = seen.setdefault((node.target, _hashable(node.args), _hashable(node.kwargs)), node)
            if source is not None and source is not node and _same_layout(node, source):
                node.replace_all_uses_with(source)
                graph.graph.erase_node(node)
                changed = True
        graph.graph.eliminate_dead_code()
    graph.recompile()
    return graph


def _is_pure(node: Node) -> bool:
    """A deterministic, out-of-place tensor operation that allocates a result of its own."""
    target = node.target
    return (node.op == "call_function" and isinstance(target, torch._ops.OpOverload) and not target._schema.is_mutable
            and torch.Tag.nondeterministic_seeded not in target.tags and "empty" not in target.__name__)


def _hashable(value):
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def _unchanged_input(node: Node) -> Node | None:
    if node.op != "call_function" or node.kwargs:
        return None
    args, target = node.args, node.target
    if target in _NEUTRAL and len(args) == 2 and not isinstance(args[1], Node) and args[1] == _NEUTRAL[target]:
        source = args[0]
    elif target in (aten.alias.default, aten.view.default, aten.expand.default):
        source = args[0]
    elif target is aten.t.default and isinstance(args[0], Node) and args[0].target is aten.t.default:
        source = args[0].args[0]
    else:
        return None
    return source if isinstance(source, Node) else None


def _written(graph: torch.fx.Graph) -> set[Node]:
    """The nodes whose values an in-place operation changes, directly or through a view."""
    written = set()
    for node in graph.nodes:
        if _is_in_place(node):
            stack = list(node.all_input_nodes)
            while stack:
                value = stack.pop()
                if value not in written:
                    written.add(value)
                    if _returns_view(value):  # its input shares the memory
                        stack.extend(value.all_input_nodes)
    return written


def _is_in_place(node: Node) -> bool:
    schema = getattr(node.target, "_schema", None)
    return node.op == "call_function" and schema is not None and schema.is_mutable


def _returns_view(node: Node) -> bool:
    schema = getattr(node.target, "_schema", None)
    return node.op == "call_function" and (schema is None or any(r.alias_info is not None for r in schema.returns))


def _same_layout(a: Node, b: Node) -> bool:
    va, vb = a.meta.get("val"), b.meta.get("val")
    return (torch.is_tensor(va) and torch.is_tensor(vb) and va.shape == vb.shape and va.dtype == vb.dtype
            and va.device == vb.device and va.stride() == vb.stride())


def as_python_function(graph: GraphModule) -> Callable:
    """The graph as a Python function of its inputs' tensors, flat, returning its outputs', flat.

    The code that ``torch.fx`` writes calls every operator through ``OpOverload.__call__``
    and packs inputs and outputs into pytrees; this one calls the C++ operators directly,
    which saves a few percent of a small network's step.
    """
    names, constants, lines = {}, {}, []

    def expression(value) -> str:
        if isinstance(value, Node):
            return names[value]
        if isinstance(value, (list, tuple)):
            items = ", ".join(expression(v) for v in value)
            return f"[{items}]" if isinstance(value, list) else f"({items},)"
        if value is None or isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value)):
            return repr(value)
        constants[f"c{len(constants)}"] = value  # dtypes, devices, tensors, inf, nan
        return f"c{len(constants) - 1}"

    for node in graph.graph.nodes:
        if node.op == "placeholder":
            names[node] = f"v{len(names)}"
        elif node.op == "get_attr":
            names[node] = expression(getattr(graph, node.target))
        elif node.op == "call_function":
            function = expression(getattr(node.target, "_op", node.target))
            arguments = [expression(a) for a in node.args] + [f"{k}={expression(v)}" for k, v in node.kwargs.items()]
            names[node] = f"v{len(names)}"
            lines.append(f"    {names[node]} = {function}({', '.join(arguments)})")
        elif node.op == "output":
            lines.append(f"    return {expression(tree_leaves(node.args[0]))}")
        else:
            raise NotImplementedError(f"graph node {node.op} {node.target}")
    inputs = [names[n] for n in graph.graph.nodes if n.op == "placeholder"]
    source = f"def replay({', '.join(inputs)}):\n" + "\n".join(lines) + "\n"
    exec(compile(source, "<ppl_vae.infer.graph_passes replay>", "exec"), constants)
    return constants["replay"]
