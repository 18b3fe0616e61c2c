"""Running a recorded loss-and-gradient graph: generated Python, inductor's fused kernels, CUDA graphs.

:class:`~ppl_vae.infer.compiled.CompiledELBO` records one ``torch.fx`` graph of aten operations
per argument shapes; :func:`replay_function` turns it into the function that each step calls:

- ``"fx"``: the graph as generated Python (:func:`~ppl_vae.infer.graph_passes.as_python_function`),
  one operator call per node, no compilation beyond ``exec``;
- ``"inductor"``: the graph compiled by torch's inductor (``torch._inductor.compile_fx``), which
  fuses elementwise chains into C++ (CPU) or Triton (CUDA) kernels. Compilation takes seconds
  per argument shapes, cached on disk across processes. On the CPU, each ``addmm`` is split
  into a matrix product and an addition (:class:`SplitAddmm`), which inductor fuses into the
  kernel that reads the product next, and the code that calls the kernels is C++ too
  (inductor's ``cpp_wrapper``), which saves the Python interpreter's cost of each call (where
  the C++ wrapper cannot be built, the kernels are called from Python).

Random draws stay torch's own: inductor runs with ``fallback_random``, so its random
operators are ATen's, drawn from torch's generator in the eager order. Compiled and
uncompiled steps therefore see the same noise, and differ only by the float rounding of
fused arithmetic.

On CUDA, either function is captured once in a CUDA graph (:func:`cuda_graphed`) and
replayed at the cost of one launch; where capture fails, the uncaptured function runs.
"""

import logging
from typing import Callable, Sequence

import torch
from torch._inductor.custom_graph_pass import CustomGraphPass
from torch.fx import GraphModule
from torch.utils._pytree import tree_leaves

from ppl_vae.infer.graph_passes import as_python_function

#: The backends of :func:`replay_function`.
BACKENDS = ("fx", "inductor")

logger = logging.getLogger("ppl_vae")


def replay_function(graph: GraphModule, parameters: Sequence[torch.Tensor], arguments: Sequence,
                    backend: str = "fx", cuda_graphs: bool = True) -> Callable:
    """The graph as a function of ``(*parameters, *arguments)`` returning its outputs, flat.

    :param graph: a graph of aten operations, its placeholders the parameters then the arguments.
    :param parameters: example parameters (detached); on CUDA their storage is read in place
        by a captured graph, so they must be the tensors that the optimizer updates.
    :param arguments: example arguments (the flat leaves of the ELBO's ``args``).
    :param backend: ``"fx"`` or ``"inductor"``.
    :param cuda_graphs: capture the function in a CUDA graph when every tensor is on CUDA.
    """
    if backend == "fx":
        function = as_python_function(graph)
    elif backend == "inductor":
        function = inductor_function(graph, [*parameters, *arguments])
    else:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    tensors = [a for a in [*parameters, *arguments] if torch.is_tensor(a)]
    if cuda_graphs and tensors and all(t.device.type == "cuda" for t in tensors):
        return cuda_graphed(function, parameters, arguments)
    return function


def inductor_function(graph: GraphModule, example_inputs: list) -> Callable:
    """The graph compiled by inductor, with torch's random operators (``fallback_random``), and
    on the CPU with its ``addmm`` split (:class:`SplitAddmm`) and a C++ wrapper (``cpp_wrapper``)."""
    from torch._inductor import config
    from torch._inductor.compile_fx import compile_fx

    on_cpu = all(t.device.type == "cpu" for t in example_inputs if torch.is_tensor(t))
    passes = {"post_grad_custom_post_pass": SplitAddmm()} if on_cpu else {}
    if on_cpu:
        # make_fx gives each placeholder's example value a fake mode of its own, which the C++
        # wrapper's compilation refuses; without them, it takes the example inputs instead
        for node in graph.graph.nodes:
            if node.op == "placeholder":
                node.meta.pop("val", None)
        try:
            with config.patch(fallback_random=True, cpp_wrapper=True, **passes):
                return _flat_outputs(compile_fx(graph, example_inputs))
        except Exception as error:  # an operation without a C++ shim, say: the Python wrapper does the same
            logger.info("inductor's C++ wrapper failed (%s); calling the kernels from Python",
                        str(error).splitlines()[0] if str(error) else type(error).__name__)
    with config.patch(fallback_random=True, **passes):
        return _flat_outputs(compile_fx(graph, example_inputs))


def _flat_outputs(compiled: Callable) -> Callable:
    """``compiled`` with its outputs flattened to a list."""

    def replay(*inputs):
        return tree_leaves(compiled(*inputs))

    return replay


class SplitAddmm(CustomGraphPass):
    """An inductor pass: ``addmm(input, a, b)`` becomes ``mm(a, b) + input``.

    On the CPU, ATen's ``addmm`` first copies its input (a layer's bias, broadcast) into the
    result and then accumulates the product into it; inductor keeps ``addmm`` whole there
    (it splits it on GPUs only) and even merges ``mm(a, b) + c`` into one. Split, the product is
    written once and the addition fuses into the kernel that reads it next (the activation,
    or the backward pass's elementwise chain), which saves a pass over every layer's output.
    The sum is rounded once more differently than ``addmm``'s, within inductor's rounding.
    Runs after inductor's own post-grad passes (``post_grad_custom_post_pass``).
    """

    def __call__(self, graph: torch.fx.Graph) -> None:
        aten = torch.ops.aten
        for node in list(graph.nodes):
            if node.target is not aten.addmm.default or any(node.kwargs.get(k, 1) != 1 for k in ("alpha", "beta")):
                continue
            bias, a, b = node.args
            with graph.inserting_before(node):
                product = graph.call_function(aten.mm.default, (a, b))
                total = graph.call_function(aten.add.Tensor, (product, bias))
            if "val" in node.meta:  # inductor's lowering reads it: the same shape, dtype and layout
                product.meta["val"] = total.meta["val"] = node.meta["val"]
            node.replace_all_uses_with(total)
            graph.erase_node(node)

    def uuid(self) -> str:
        """The pass's key in inductor's cache (a change of the pass must change it)."""
        return "ppl_vae.SplitAddmm.1"


def cuda_graphed(function: Callable, parameters: Sequence[torch.Tensor], arguments: Sequence) -> Callable:
    """``function`` captured in a CUDA graph, with static buffers for the arguments.

    The parameters are read in place (the optimizer updates them in place); each call copies
    its arguments into the buffers, replays the graph and returns its (static) outputs, which
    the next call overwrites. Warm-up and capture run on a fork of torch's RNG, so the draws
    of later calls are those the uncaptured function would make. Where capture fails,
    ``function`` itself is returned, with a notice.
    """
    buffers = [a.clone() if torch.is_tensor(a) else a for a in arguments]
    device = next(t.device for t in [*parameters, *buffers] if torch.is_tensor(t))
    try:
        with torch.random.fork_rng(devices=[device.index or 0]):
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(2):  # lets lazy initialization (cuBLAS workspaces) happen outside capture
                    function(*parameters, *buffers)
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = function(*parameters, *buffers)
    except RuntimeError as error:
        logger.warning("CUDA graph capture failed (%s); replaying without it", str(error).splitlines()[0])
        return function
    count = len(parameters)

    def replay(*inputs):
        for buffer, value in zip(buffers, inputs[count:]):
            if torch.is_tensor(buffer):
                buffer.copy_(value)
        graph.replay()
        return outputs

    return replay
