"""The trainer's CUDA-graph hook: a training step's forward, loss and backward as one replayed graph.

`graphed_pass(model, task, run, device, params)` returns None (the eager step runs) unless the
setting is on (`armin.model.graphs.enabled`) and the run is `eligible` (CUDA, ARMIN, no carried
state, a temperature that rarely changes). Otherwise `training_step` calls `run_pass`, which draws
the Gumbel noise from the same generator and in the same order as the model would, so a graphed
run and an eager run see identical batches and noise.
"""

from __future__ import annotations

import torch

from armin.model import ARMIN, gumbel_noise, graphs
from armin.tasks import Batch, Task
from armin.training.config import RunConfig


def graphed_pass(model: torch.nn.Module, task: Task, run: RunConfig, device: torch.device, params: list,
                 *, force: bool = False, capture: graphs.Capture = graphs.capture_cuda) -> graphs.GraphedPass | None:
    """The run's `GraphedPass`, or None where it does not apply; `force` and `capture`: CPU tests."""
    if not isinstance(model, ARMIN) or not (force or graphs.enabled()):
        return None
    temperatures = [run.model.temperature(s) for s in range(run.train.steps)]
    if not force and not graphs.eligible(device, task.carries_state, temperatures):
        return None

    def loss_and_backward(temperature: float, x: torch.Tensor, targets: torch.Tensor,
                          *noise: torch.Tensor) -> tuple[torch.Tensor]:
        out = model(x, temperature=temperature, noise=noise[0] if noise else None)
        loss = task.loss(out.logits, Batch(x, targets))
        loss.backward()
        return (loss.detach(),)

    return graphs.GraphedPass(loss_and_backward, params, capture=capture)


def run_pass(graphed: graphs.GraphedPass, model: ARMIN, batch: Batch, temperature: float,
             gen: torch.Generator) -> torch.Tensor:
    """The batch's loss, its gradients left in the parameters; noise drawn as `ARMIN.forward` draws it."""
    T, B, _ = batch.inputs.shape
    noise = gumbel_noise((T, B, model.sizes[2]), gen, model.cfg.gate_noise_width).to(batch.inputs) \
        if model.noisy() else None
    inputs = (batch.inputs, batch.targets) + (() if noise is None else (noise,))
    return graphed(*inputs, key=temperature)[0]
