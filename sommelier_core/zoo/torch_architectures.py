"""PyTorch architectures of the built-in zoo: small classifiers for 8x8 images and MNIST-1D signals.

This file is copied verbatim into the generated Torch Hub repository (as `zoo_architectures.py`),
so it imports nothing but `torch`. Every network is a sequence of *stages* — the units transfer
learning freezes — whose last stage is the classification head; all output logits (N, 10).
Images are NCHW (N, 1, 8, 8); signals are (N, 40).
"""

from __future__ import annotations

import torch
from torch import nn

NUM_CLASSES = 10


class StagedNet(nn.Module):
    """A classifier made of stages applied in order; the last one is the head."""

    def __init__(self, stages: list[nn.Module]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x

    def feature_stage_count(self) -> int:
        """How many stages precede the head (the most that transfer learning can freeze)."""
        return len(self.stages) - 1


class ResidualBlock(nn.Module):
    """Two 3x3 conv + batch-norm layers whose output is added to the block's input (a real skip)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(x + residual)


def mlp8(width: int) -> StagedNet:
    """Two hidden fully-connected layers of `width` units over the flattened 8x8 image."""
    return StagedNet(
        [
            nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU()),
            nn.Sequential(nn.Linear(width, width), nn.ReLU()),
            nn.Linear(width, NUM_CLASSES),
        ]
    )


def cnn8(width: int) -> StagedNet:
    """Three 3x3 conv layers (width, 2·width, 2·width channels) with two max-pools, then a linear head."""
    return StagedNet(
        [
            nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
            nn.Sequential(nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
            nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 4, NUM_CLASSES)),
        ]
    )


def rescnn8(width: int) -> StagedNet:
    """A conv stem and two residual blocks (a max-pool between), global average pooling, linear head."""
    return StagedNet(
        [
            nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()),
            nn.Sequential(ResidualBlock(width), nn.MaxPool2d(2)),
            ResidualBlock(width),
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, NUM_CLASSES)),
        ]
    )


def _separable(channels_in: int, channels_out: int) -> nn.Sequential:
    """Depthwise 3x3 conv (one group per channel) then pointwise 1x1 conv, then a max-pool."""
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_in, 3, padding=1, groups=channels_in),
        nn.ReLU(),
        nn.Conv2d(channels_in, channels_out, 1),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


def dwcnn8(width: int) -> StagedNet:
    """A conv stem and two depthwise-separable blocks (MobileNet style), then a linear head."""
    return StagedNet(
        [
            nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU()),
            _separable(width, 2 * width),
            _separable(2 * width, 2 * width),
            nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 4, NUM_CLASSES)),
        ]
    )


def mlp1d(width: int) -> StagedNet:
    """Two hidden fully-connected layers of `width` units over a 40-sample signal."""
    return StagedNet(
        [
            nn.Sequential(nn.Linear(40, width), nn.ReLU()),
            nn.Sequential(nn.Linear(width, width), nn.ReLU()),
            nn.Linear(width, NUM_CLASSES),
        ]
    )


def cnn1d(width: int) -> StagedNet:
    """Three 1-D conv layers (the last two with stride 2) over a 40-sample signal, then a linear head."""
    return StagedNet(
        [
            nn.Sequential(nn.Unflatten(1, (1, 40)), nn.Conv1d(1, width, 5, padding=2), nn.ReLU()),
            nn.Sequential(nn.Conv1d(width, width, 3, stride=2, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv1d(width, width, 3, stride=2, padding=1), nn.ReLU()),
            nn.Sequential(nn.Flatten(), nn.Linear(width * 10, NUM_CLASSES)),
        ]
    )


ARCHITECTURES = {
    "mlp": mlp8,
    "cnn": cnn8,
    "rescnn": rescnn8,
    "dwcnn": dwcnn8,
    "mlp1d": mlp1d,
    "cnn1d": cnn1d,
}
INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "mlp": (1, 8, 8),
    "cnn": (1, 8, 8),
    "rescnn": (1, 8, 8),
    "dwcnn": (1, 8, 8),
    "mlp1d": (40,),
    "cnn1d": (40,),
}


def build_architecture(architecture: str, width: int) -> StagedNet:
    """A freshly initialised network of the named architecture and width (uses torch's global RNG)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](width)
