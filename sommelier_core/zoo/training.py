"""Seeded training and evaluation of the zoo's PyTorch classifiers.

Training is deterministic: initialisation and batch order come from the given seed (the caller's
global RNG state is restored afterwards), and the zoo builder runs it with deterministic
algorithms on a fixed number of threads, so the same seed gives the same weight bytes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sommelier_core.zoo.datasets import Dataset
from sommelier_core.zoo.torch_architectures import StagedNet


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser settings for one training run (Adam on cross-entropy over logits)."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 3e-3


@contextlib.contextmanager
def deterministic_torch(threads: int = 2) -> Iterator[None]:
    """Run torch with deterministic algorithms on `threads` threads, restoring both settings after."""
    saved_threads = torch.get_num_threads()
    saved_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(saved_threads)
        torch.use_deterministic_algorithms(saved_deterministic)


def seeded_init(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Call `build` with torch's global RNG seeded by `seed`, leaving the caller's RNG state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def train_classifier(
    model: StagedNet,
    data: Dataset,
    seed: int,
    config: TrainConfig = TrainConfig(),
    frozen_stages: int = 0,
) -> StagedNet:
    """Train `model` in place on `data` and return it in eval mode.

    The first `frozen_stages` stages keep their weights (and, being in eval mode, their batch-norm
    statistics): this is how the transfer variants fine-tune a pretrained feature extractor.
    """
    if data.y is None:
        raise ValueError(f"dataset {data.name!r} has no labels to train on")
    for index, stage in enumerate(model.stages):
        stage.requires_grad_(index >= frozen_stages)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=config.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.from_numpy(np.array(data.x)), torch.from_numpy(np.array(data.y))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(config.epochs):
        model.train()
        for index in range(frozen_stages):
            model.stages[index].eval()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), config.batch_size):
            batch = order[start : start + config.batch_size]
            optimizer.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimizer.step()
    model.requires_grad_(True)
    return model.eval()


def predict_logits(model: nn.Module, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """The model's logits on `x`, in eval mode and without gradients."""
    model.eval()
    with torch.no_grad():
        parts = [model(torch.from_numpy(np.array(x[i : i + batch_size]))) for i in range(0, len(x), batch_size)]
    return torch.cat(parts).numpy()


def top1(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Predicted class per input (argmax of the logits)."""
    return predict_logits(model, x).argmax(axis=1)


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of predictions equal to the labels."""
    return float(np.mean(predictions == labels))


def disagreement(predictions: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of inputs whose top-1 prediction differs (paper §3, label-free)."""
    return float(np.mean(predictions != reference))
