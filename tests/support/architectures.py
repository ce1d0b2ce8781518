"""Real architectures from their own libraries, tiny and with random weights (no downloads), plus
data of the right kind for each: what the conformance matrix runs compression and import on.

torchvision and transformers are user libraries here: they are imported inside the factories,
after `tests/conftest.py` has installed the torchvision operator shim.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A model factory, a data factory ``(rng, n) -> (inputs, labels)``, the class count and the
    user library the factory imports (None: plain torch)."""

    build: Callable[[], nn.Module]
    data: Callable[[np.random.Generator, int], tuple[Any, np.ndarray]]
    classes: int = 4
    library: str | None = None


def _images(rng: np.random.Generator, n: int) -> tuple[Any, np.ndarray]:
    return rng.normal(size=(n, 3, 32, 32)).astype(np.float32), rng.integers(0, 4, n)


def _tokens(rng: np.random.Generator, n: int) -> tuple[Any, np.ndarray]:
    ids = rng.integers(1, 100, (n, 12)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[:, 9:] = rng.integers(0, 2, (n, 3))
    return {"input_ids": ids, "attention_mask": mask}, rng.integers(0, 4, n)


def _token_ids(rng: np.random.Generator, n: int) -> tuple[Any, np.ndarray]:
    return rng.integers(1, 100, (n, 12)).astype(np.int64), rng.integers(0, 4, n)


def _features(rng: np.random.Generator, n: int) -> tuple[Any, np.ndarray]:
    values = rng.normal(size=(n, 16)).astype(np.float32)
    return {"values": values, "mask": (rng.random((n, 16)) < 0.8).astype(np.float32)}, rng.integers(0, 4, n)


def _torchvision(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision.models

        return getattr(torchvision.models, name)(num_classes=4)  # type: ignore[no-any-return]

    return build


def _bert() -> nn.Module:
    import transformers

    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=16, num_labels=4)
    return transformers.BertForSequenceClassification(config)


def _distilbert() -> nn.Module:
    import transformers

    config = transformers.DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                           max_position_embeddings=16, num_labels=4)
    return transformers.DistilBertForSequenceClassification(config)


def _vit() -> nn.Module:
    import transformers

    config = transformers.ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=64, num_labels=4)
    return transformers.ViTForImageClassification(config)


def _gpt2() -> nn.Module:
    import transformers

    config = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=16, num_labels=4,
                                     pad_token_id=0)
    return transformers.GPT2ForSequenceClassification(config)


class GRUClassifier(nn.Module):
    """Token ids -> embedding -> GRU -> the last state -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 16)
        self.rnn = nn.GRU(16, 32, batch_first=True)
        self.head = nn.Linear(32, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(ids))
        return self.head(out[:, -1])  # type: ignore[no-any-return]


class MaskedMLP(nn.Module):
    """A model with a dict input: ``values`` and a ``mask`` that zeroes some of them."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))

    def forward(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(values * mask)  # type: ignore[no-any-return]


ARCHITECTURES = {
    "resnet18": Architecture(_torchvision("resnet18"), _images, library="torchvision.models"),
    "mobilenet_v2": Architecture(_torchvision("mobilenet_v2"), _images, library="torchvision.models"),
    "mobilenet_v3_small": Architecture(_torchvision("mobilenet_v3_small"), _images, library="torchvision.models"),
    "efficientnet_b0": Architecture(_torchvision("efficientnet_b0"), _images, library="torchvision.models"),
    "convnext_tiny": Architecture(_torchvision("convnext_tiny"), _images, library="torchvision.models"),
    "shufflenet_v2_x0_5": Architecture(_torchvision("shufflenet_v2_x0_5"), _images, library="torchvision.models"),
    "densenet121": Architecture(_torchvision("densenet121"), _images, library="torchvision.models"),
    "regnet_y_400mf": Architecture(_torchvision("regnet_y_400mf"), _images, library="torchvision.models"),
    "squeezenet1_1": Architecture(_torchvision("squeezenet1_1"), _images, library="torchvision.models"),
    "swin_t": Architecture(_torchvision("swin_t"), _images, library="torchvision.models"),
    "bert": Architecture(_bert, _tokens, library="transformers"),
    "distilbert": Architecture(_distilbert, _tokens, library="transformers"),
    "vit": Architecture(_vit, _images, library="transformers"),
    "gpt2": Architecture(_gpt2, _tokens, library="transformers"),
    "gru": Architecture(GRUClassifier, _token_ids),
    "dict_mlp": Architecture(MaskedMLP, _features),
}


def dataset(arch: Architecture, seed: int = 0, n: int = 96) -> dict[str, Any]:
    """Train and test splits (calibration and validation are carved off train)."""
    rng = np.random.default_rng(seed)
    return {"train": arch.data(rng, n), "test": arch.data(rng, n // 3)}
