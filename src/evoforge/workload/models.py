"""Built-in model definitions for the bundled datasets.

Plain ``nn.Module`` classes (no quantization stubs, TorchScript-traceable). `BUILTIN_MODELS`
maps a name to a factory ``factory(num_outputs) -> nn.Module``; ``num_outputs`` is the number of
classes, or 1 for regression (regression models return shape ``(N,)``). ``resnet18`` is
torchvision's ResNet-18 architecture (same layers, same parameter names, so torchvision weights
load into it) defined here so that the built-in task needs no torchvision; ``bert_tokens`` is a
small BERT built by transformers from a config, with random weights (no download).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from evoforge.errors import ConfigError
from evoforge.quiet import quiet_torch_internals
from evoforge.registry import Registry

ModelFactory = Callable[[int], nn.Module]
BUILTIN_MODELS: Registry[ModelFactory] = Registry("built-in model")


def _conv_bn_relu(cin: int, cout: int, kernel: int, *, stride: int = 1, groups: int = 1, dims: int = 2) -> nn.Sequential:
    conv = nn.Conv2d if dims == 2 else nn.Conv1d
    bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return nn.Sequential(
        conv(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        bn(cout),
        nn.ReLU(),
    )


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a 1x1 conv-BN shortcut (channel change), summed, then ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = self.relu2(out + self.shortcut(x))
        return out


class DigitsCNN(nn.Module):
    """Residual CNN for (N, 1, 8, 8) digits: conv stem, one residual block, 2x2 max-pool, a second
    conv, global average pooling and a linear head (about 38K parameters)."""

    def __init__(self, num_classes: int = 10, width: int = 20) -> None:
        super().__init__()
        self.stem = _conv_bn_relu(1, width, 3)
        self.block = ResidualBlock(width, 2 * width)
        self.pool = nn.MaxPool2d(2)
        self.conv = _conv_bn_relu(2 * width, 2 * width, 3)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pool(self.block(self.stem(x))))
        out: torch.Tensor = self.head(self.flatten(self.gap(x)))
        return out


class DigitsMLP(nn.Module):
    """MLP 64-128-128-classes on flattened inputs."""

    def __init__(self, num_classes: int = 10, in_features: int = 64, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class MNIST1DCNN(nn.Module):
    """1-D CNN for (N, 1, 40) mnist1d sequences: three conv-BN-ReLU layers (two strided), then a
    linear head over the flattened (channels x 10) feature map, which keeps positional information."""

    def __init__(self, num_classes: int = 10, width: int = 32, length: int = 40) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn_relu(1, width, 5, dims=1),
            _conv_bn_relu(width, width, 3, stride=2, dims=1),
            _conv_bn_relu(width, width, 3, stride=2, dims=1),
        )
        self.flatten = nn.Flatten()
        self.head = nn.Linear(width * ((length + 3) // 4), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.flatten(self.features(x)))
        return out


class SeriesCNN(nn.Module):
    """1-D CNN regressor for (N, 1, 64) series: conv-BN-ReLU layers, global average pooling, a
    small MLP head; returns shape (N,) when ``num_outputs == 1``."""

    def __init__(self, num_outputs: int = 1, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn_relu(1, width, 7, dims=1),
            _conv_bn_relu(width, width, 5, stride=2, dims=1),
            _conv_bn_relu(width, 2 * width, 3, stride=2, dims=1),
        )
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Sequential(nn.Linear(2 * width, width), nn.ReLU(), nn.Linear(width, num_outputs))
        self.squeeze = num_outputs == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.flatten(self.gap(self.features(x))))
        return out.squeeze(-1) if self.squeeze else out


class DigitsMobileNet(nn.Module):
    """MobileNet-style CNN for (N, 1, 8, 8) digits: a conv stem, then depthwise-separable blocks
    (3x3 depthwise conv-BN-ReLU, 1x1 pointwise conv-BN-ReLU), global average pooling, linear head."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu(1, widths[0], 3)]
        for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])):
            stride = 2 if i == 1 else 1
            layers.append(_conv_bn_relu(cin, cin, 3, stride=stride, groups=cin))  # depthwise
            layers.append(_conv_bn_relu(cin, cout, 1))  # pointwise
        self.features = nn.Sequential(*layers)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.flatten(self.gap(self.features(x))))
        return out


class TwoFCNet(nn.Module):
    """The "2fcNet": flatten, Linear(in, hidden), ReLU, Linear(hidden, classes)."""

    def __init__(self, num_classes: int = 10, in_features: int = 64, hidden: int = 128) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_features, hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc2(self.relu(self.fc1(self.flatten(x))))
        return out


@BUILTIN_MODELS.register("digits_cnn")
def digits_cnn(num_outputs: int = 10) -> DigitsCNN:
    return DigitsCNN(num_outputs)


@BUILTIN_MODELS.register("digits_mlp")
def digits_mlp(num_outputs: int = 10) -> DigitsMLP:
    return DigitsMLP(num_outputs)


@BUILTIN_MODELS.register("mnist1d_cnn")
def mnist1d_cnn(num_outputs: int = 10) -> MNIST1DCNN:
    return MNIST1DCNN(num_outputs)


@BUILTIN_MODELS.register("series_cnn")
def series_cnn(num_outputs: int = 1) -> SeriesCNN:
    return SeriesCNN(num_outputs)


@BUILTIN_MODELS.register("digits_mobilenet")
def digits_mobilenet(num_outputs: int = 10) -> DigitsMobileNet:
    return DigitsMobileNet(num_outputs)


@BUILTIN_MODELS.register("two_fc_net")
def two_fc_net(num_outputs: int = 10) -> TwoFCNet:
    return TwoFCNet(num_outputs)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN layers, a shortcut (1x1 conv-BN when the shape
    changes), added, then ReLU; named as in torchvision."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out: torch.Tensor = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)  # type: ignore[no-any-return]


class ResNet18(nn.Module):
    """torchvision's ResNet-18: 7x7 stride-2 stem, max-pool, four stages of two basic blocks
    (64, 128, 256, 512 channels), global average pooling, a linear head (11.2M parameters)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        widths = (64, 128, 256, 512)
        cin = 64
        stages = []
        for i, width in enumerate(widths):
            stages.append(nn.Sequential(BasicBlock(cin, width, 1 if i == 0 else 2), BasicBlock(width, width)))
            cin = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        out: torch.Tensor = self.fc(torch.flatten(self.avgpool(x), 1))
        return out


@BUILTIN_MODELS.register("resnet18")
def resnet18(num_outputs: int = 10) -> ResNet18:
    return ResNet18(num_outputs)


MOBILENET_V1_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)
"""MobileNet-V1's 13 depthwise-separable blocks as (output channels, stride), width 1.0; the five
(512, 1) blocks are the run of same-shape blocks."""


class MobileNetV1(nn.Module):
    """MobileNet-V1 at width 1.0 for (N, 3, 32, 32) images, in the CIFAR layout the GEVO-ML paper
    evolved: a 3x3 stride-1 conv stem (32 channels), the 13 depthwise-separable blocks of
    `MOBILENET_V1_BLOCKS` (3x3 depthwise conv-BN-ReLU, 1x1 pointwise conv-BN-ReLU), global average
    pooling and a linear head (3.2M parameters)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu(3, 32, 3)]
        cin = 32
        for cout, stride in MOBILENET_V1_BLOCKS:
            layers.append(nn.Sequential(_conv_bn_relu(cin, cin, 3, stride=stride, groups=cin), _conv_bn_relu(cin, cout, 1)))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.flatten(self.gap(self.features(x))))
        return out


@BUILTIN_MODELS.register("mobilenet_v1")
def mobilenet_v1(num_outputs: int = 10) -> MobileNetV1:
    return MobileNetV1(num_outputs)


BERT_TOKENS_CONFIG = {
    "vocab_size": 1000, "hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
    "intermediate_size": 512, "max_position_embeddings": 64,
}
"""The small BERT of the ``bert-tokens`` task (1.0M parameters)."""


@BUILTIN_MODELS.register("bert_tokens")
def bert_tokens(num_outputs: int = 2) -> nn.Module:
    """``transformers.BertForSequenceClassification`` from `BERT_TOKENS_CONFIG`, random weights;
    it takes ``input_ids`` and ``attention_mask`` (int64)."""
    transformers = import_transformers()
    config = transformers.BertConfig(**BERT_TOKENS_CONFIG, num_labels=num_outputs)
    model = transformers.BertForSequenceClassification(config)
    for module in model.modules():  # tracing reads every submodule's loss function: name it, or it warns
        if hasattr(module, "loss_type"):
            module.loss_type = "ForSequenceClassification"
    return model  # type: ignore[no-any-return]


def import_transformers() -> Any:
    """``transformers``, or a `ConfigError` that says why it does not import."""
    import importlib
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        raise ConfigError("this model needs the transformers package: pip install transformers")
    try:
        with quiet_torch_internals():  # transformers imports torchao, which announces its CUDA kernels
            transformers = importlib.import_module("transformers")
            # transformers imports lazily: the configs load without torchvision, the model classes
            # need it, so a broken torchvision shows only here
            transformers.BertForSequenceClassification  # noqa: B018
        return transformers
    except Exception as exc:  # noqa: BLE001 - transformers hides the real cause behind a generic message
        cause = exc
    if importlib.util.find_spec("torchvision") is not None:
        try:
            importlib.import_module("torchvision")
        except Exception as tv_exc:  # noqa: BLE001
            raise ConfigError(
                f"transformers does not import because torchvision fails to import ({type(tv_exc).__name__}: {tv_exc}); "
                "install the torchvision build that matches your torch, or uninstall torchvision"
            ) from None
    raise ConfigError(f"transformers does not import ({type(cause).__name__}: {cause})") from None
