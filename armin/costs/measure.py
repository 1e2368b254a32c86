"""Measuring one callable: the peak tensor memory it allocates, the FLOPs it runs, a device sync.

Tensor memory, not process memory: on CPU the profiler's allocator events (every tensor allocation
and free, in order) give the running total and its peak; on CUDA the caching allocator's own peak
statistic does. Either way the figure is the peak *above* what was allocated when the callable
started (activations, gradients, temporaries, new optimizer state), so it is the same quantity on
both devices and does not depend on what the process held before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def device_name(device: torch.device) -> str:
    """What a cost was measured on, as trials and profiles record it: "cpu", or the GPU's model name."""
    return str(device) if device.type == "cpu" else torch.cuda.get_device_name(device)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a clock read after it measures the work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_tensor_bytes(fn: Callable[[], Any], device: torch.device) -> tuple[int, Any]:
    """(peak bytes allocated by tensors while `fn()` ran, above the start; what `fn` returned)."""
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        out = fn()
        sync(device)
        return int(torch.cuda.max_memory_allocated(device) - base), out
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    now = peak = 0
    for e in events:  # nbytes > 0: an allocation, < 0: a free
        now += e.nbytes()
        peak = max(peak, now)
    return int(peak), out


def _rnn_layer_matmuls(input_shape, w_ih_shape, w_hh_shape) -> int:
    """Multiply-adds x 2 of one LSTM layer over a sequence: T B (4H X + 4H H) for (T, B, X) inputs."""
    steps = input_shape[0] * input_shape[1]
    return 2 * steps * (w_ih_shape[0] * w_ih_shape[1] + w_hh_shape[0] * w_hh_shape[1])


def _mkldnn_rnn_layer(input_shape, w_ih_shape, w_hh_shape, *args, out_shape=None, **kwargs) -> int:
    return _rnn_layer_matmuls(input_shape, w_ih_shape, w_hh_shape)


def _mkldnn_rnn_layer_backward(input_shape, w_ih_shape, w_hh_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _rnn_layer_matmuls(input_shape, w_ih_shape, w_hh_shape)  # d input/h (W^T) and d W: twice the forward


# torch.lstm on CPU is one opaque oneDNN op that the counter has no formula for: the same matmul count as an
# unrolled LSTM (what nn.LSTM's documented equations do), so the LSTM baseline is counted like the other arms.
RNN_FORMULAS = {torch.ops.aten.mkldnn_rnn_layer: _mkldnn_rnn_layer,
                torch.ops.aten.mkldnn_rnn_layer_backward: _mkldnn_rnn_layer_backward}


def count_flops(fn: Callable[[], Any]) -> int:
    """Floating-point operations `fn()` dispatches to torch (matmuls, convolutions, attention: what
    `torch.utils.flop_counter` counts, plus CPU LSTM layers; a multiply-add is 2), forward and backward.

    Ops inside a C++ extension are invisible to it: count on a model's eager path.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=RNN_FORMULAS) as counter:
        fn()
    return int(counter.get_total_flops())
