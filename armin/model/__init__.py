"""The model family: `build_model(cfg, input_size, output_size, seed)` is the one entry point."""

from __future__ import annotations

from torch import nn

from armin.model.armin import ARMIN, ModelOutput, RecurrentState, gumbel_noise
from armin.model.config import ModelConfig, TemperatureSchedule
from armin.model.init import initialize
from armin.model.lstm import LSTMBaseline

__all__ = ["ARMIN", "LSTMBaseline", "ModelConfig", "ModelOutput", "RecurrentState",
           "TemperatureSchedule", "build_model", "count_parameters", "gumbel_noise"]


def build_model(cfg: ModelConfig, input_size: int, output_size: int, seed: int) -> nn.Module:
    """The configured model with its seeded initial weights (float32, CPU)."""
    model = LSTMBaseline(cfg, input_size, output_size) if cfg.arch == "lstm" else ARMIN(cfg, input_size, output_size)
    initialize(model, seed)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
