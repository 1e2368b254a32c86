"""The profile's measuring primitives against hand counts: FLOPs, tensor memory, parameters."""

import torch

from armin.costs.measure import count_flops, peak_tensor_bytes
from armin.model import ModelConfig, build_model, count_parameters
from armin.tasks import CopyConfig, build_task

CPU = torch.device("cpu")


def test_flops_of_a_linear_layer_forward_and_backward_are_the_hand_count():
    B, X, Y = 3, 7, 5
    layer = torch.nn.Linear(X, Y)
    x = torch.randn(B, X, requires_grad=True)
    # forward x W^T: 2BXY; backward: d x = dy W (2BXY) and d W = dy^T x (2BXY); the bias adds are not counted
    assert count_flops(lambda: layer(x).sum().backward()) == 3 * 2 * B * X * Y
    x.requires_grad_(False)
    assert count_flops(lambda: layer(x).sum().backward()) == 2 * 2 * B * X * Y  # no d x asked for


def test_flops_of_torch_lstm_are_the_unrolled_matmuls():
    T, B, X, H = 6, 4, 3, 5
    lstm = torch.nn.LSTM(X, H)
    x = torch.randn(T, B, X, requires_grad=True)
    forward = 2 * T * B * 4 * H * (X + H)  # x W_ih^T and h W_hh^T at every step
    assert count_flops(lambda: lstm(x)[0].sum().backward()) == 3 * forward  # forward, then d inputs/h and d W


def test_peak_tensor_memory_of_a_known_allocation_pattern():
    mib = 2**20

    def pattern():
        a = torch.empty(mib // 4)  # 1 MiB of float32
        b = torch.empty(2 * mib // 4)  # 2 MiB: 3 MiB live
        del a
        c = torch.empty(mib // 2 // 4)  # 0.5 MiB: 2.5 MiB live, below the peak
        return b.numel() + c.numel()

    held = torch.empty(8 * mib // 4)  # allocated before: not part of the peak
    peak, out = peak_tensor_bytes(pattern, CPU)
    assert peak == 3 * mib and out == (2 * mib + mib // 2) // 4
    del held


def test_parameter_count_of_the_lstm_baseline_is_the_hand_count():
    task = build_task(CopyConfig(max_len=3))
    X, Y, H = task.input_size, task.output_size, 6
    model = build_model(ModelConfig(arch="lstm", hidden_size=H), X, Y, seed=0)
    assert count_parameters(model) == 4 * H * (X + H) + 4 * H + H * Y + Y  # gates (one bias), head
