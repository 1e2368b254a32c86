"""A training step's forward and backward replayed as one CUDA graph (issue 11, fast path step a).

On a GPU the fused loop is a dozen small kernels per time step launched from Python, forward and
backward: launch overhead, not arithmetic, sets its speed. Capturing the whole pass once per input
shape with `torch.cuda.CUDAGraph` and replaying it launches all of them at once.

`GraphedPass(fn, params)` wraps `fn(key, *inputs) -> outputs` that runs forward *and* backward (it
calls `.backward()`, leaving gradients in `params`); `key` holds the plain values a graph bakes in
(the temperature). Each call copies the inputs into the static buffers of the capture for their
shapes, dtypes, devices and `key`, and replays it; a key not seen yet is captured first (a few
warm-up runs on a side stream, then the capture). The `max_graphs` most recent keys are kept, the
least recently used dropped. After a replay each parameter's `.grad` is (re)bound to the graph's
gradient tensor, so `zero_grad(set_to_none=True)`, clipping and the optimizer step outside the
graph work as in an eager step. Outputs are the graph's static tensors: read them before the next
call.

The capture itself is injectable (`capture=`): the cache logic is tested on CPU with a stand-in
that runs `fn` eagerly; the real capture needs CUDA. Whether the trainer uses this (`enabled`) is
the setting ARMIN_CUDA_GRAPHS, off by default until a GPU benchmark shows it faster.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

ENV = "ARMIN_CUDA_GRAPHS"  # "1": the trainer replays training steps as CUDA graphs where `eligible`
WARMUP_RUNS = 3  # eager runs on a side stream before a capture (cuBLAS handles, autograd's lazy set-up)
MAX_GRAPHS = 4  # captures kept (each holds its own memory pool)
RECAPTURE_EVERY = 100  # a run may re-capture (a new shape or temperature) at most once per this many steps


@dataclass
class Captured:
    """One capture: its static input buffers, outputs, parameter gradients, and how to replay it."""

    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    grads: list[Tensor | None]
    replay: Callable[[], None]


Capture = Callable[[Callable[..., tuple[Tensor, ...]], tuple[Tensor, ...], list[Tensor]], Captured]


def _clear_grads(params: Sequence[Tensor]) -> None:
    for p in params:
        p.grad = None


def capture_cuda(fn: Callable[..., tuple[Tensor, ...]], inputs: tuple[Tensor, ...], params: list[Tensor]
                 ) -> Captured:
    """Capture `fn(*inputs)` (forward and backward) as a CUDA graph on static copies of `inputs`."""
    static = tuple(t.clone() for t in inputs)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture stream, as torch's whole-network recipe
        for _ in range(WARMUP_RUNS):
            _clear_grads(params)
            fn(*static)
    torch.cuda.current_stream().wait_stream(side)
    _clear_grads(params)  # the captured backward allocates .grad from the graph's pool
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = fn(*static)
    return Captured(static, tuple(outputs), [p.grad for p in params], graph.replay)


def capture_eager(fn: Callable[..., tuple[Tensor, ...]], inputs: tuple[Tensor, ...], params: list[Tensor]
                  ) -> Captured:
    """The CPU stand-in for `capture_cuda` (tests): a "replay" reruns `fn` on the static buffers and
    copies its results into the first run's output and gradient tensors, as a graph writes in place."""
    static = tuple(t.clone() for t in inputs)
    _clear_grads(params)
    outputs = tuple(fn(*static))
    grads = [p.grad for p in params]

    def replay() -> None:
        _clear_grads(params)
        for out, new in zip(outputs, fn(*static)):
            out.copy_(new)
        for g, p in zip(grads, params):
            if g is not None:
                g.copy_(p.grad)
    return Captured(static, outputs, grads, replay)


class GraphedPass:
    """`fn(*inputs)` (forward + backward) replayed from a capture per input key; see the module doc."""

    def __init__(self, fn: Callable[..., tuple[Tensor, ...]], params: Sequence[Tensor], *,
                 capture: Capture = capture_cuda, max_graphs: int = MAX_GRAPHS):
        if max_graphs < 1:
            raise ValueError(f"max_graphs must be >= 1, got {max_graphs}")
        self.fn, self.params, self.capture, self.max_graphs = fn, list(params), capture, max_graphs
        self.graphs: OrderedDict[Hashable, Captured] = OrderedDict()
        self.captures = 0  # how many captures were made (a re-capture counts again)

    @staticmethod
    def key_of(inputs: Sequence[Tensor], key: Hashable = None) -> Hashable:
        return tuple((tuple(t.shape), t.dtype, t.device) for t in inputs), key

    def __call__(self, *inputs: Tensor, key: Hashable = None) -> tuple[Tensor, ...]:
        k = self.key_of(inputs, key)
        cap = self.graphs.get(k)
        if cap is None:
            cap = self.capture(partial(self.fn, key), tuple(inputs), self.params)
            self.captures += 1
            self.graphs[k] = cap
            while len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
        else:
            self.graphs.move_to_end(k)
            for buf, t in zip(cap.inputs, inputs):
                buf.copy_(t)
        cap.replay()  # a capture records without running: replay it for these inputs too
        for p, g in zip(self.params, cap.grads):
            p.grad = g
        return cap.outputs


def enabled() -> bool:
    """The trainer's setting: ARMIN_CUDA_GRAPHS=1 (default off: not yet measured faster on a GPU)."""
    return os.environ.get(ENV, "0") == "1"


def eligible(device: torch.device, carries_state: bool, temperatures: Sequence[float]) -> bool:
    """Whether a run may replay its steps as graphs: on CUDA, with no state carried between batches
    (a graph's inputs are its batch alone), and a temperature (baked into the graph) that changes at
    most once per RECAPTURE_EVERY steps."""
    changes = sum(a != b for a, b in zip(temperatures, temperatures[1:]))
    return device.type == "cuda" and not carries_state and changes * RECAPTURE_EVERY <= len(temperatures)
