"""Architectures of the zoo: the C&W / DDN / ALMA MNIST CNN, models A-D of the min-max supplement (Table A1),
and two whose gradients mislead attacks: k-winners-take-all (Xiao et al. 2020) and an input quantization."""

from __future__ import annotations

import torch
from torch import nn


def smallcnn(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """The MNIST CNN of Carlini & Wagner (2017), used by the DDN and ALMA papers.

    conv3x3-32, conv3x3-32, maxpool2, conv3x3-64, conv3x3-64, maxpool2, fc200, fc200, fc10 (ReLU between).
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3), nn.ReLU(),
        nn.Conv2d(32, 32, 3), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(),
        nn.Conv2d(64, 64, 3), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 200), nn.ReLU(),
        nn.Linear(200, 200), nn.ReLU(),
        nn.Linear(200, num_classes),
    )


def mlp(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """Model A of Table A1 (min-max supplement): MLP FC128-FC128-FC64-FC10 with ReLU (logits, no softmax)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_channels * 28 * 28, 128), nn.ReLU(),
        nn.Linear(128, 128), nn.ReLU(),
        nn.Linear(128, 64), nn.ReLU(),
        nn.Linear(64, num_classes),
    )


def allcnn(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """Model B of Table A1: All-CNN (Springenberg et al.): strided convolutions instead of pooling.

    Conv32, Conv64, Conv128 (stride 2) + Dropout(0.5), Conv128, Conv128, Conv128 (stride 2) + Dropout(0.5),
    Conv128, Conv1x1-128, Conv1x1-classes, global average pooling. Table A1 leaves the strides open; the two
    dropout-followed layers downsample, as in All-CNN-C.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(), nn.Dropout(0.5),
        nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
        nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
        nn.Conv2d(128, 128, 3, stride=2, padding=1), nn.ReLU(), nn.Dropout(0.5),
        nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
        nn.Conv2d(128, 128, 1), nn.ReLU(),
        nn.Conv2d(128, num_classes, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def lenet(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """Model C of Table A1: LeNet (Conv5x5-6, maxpool, Conv5x5-16, maxpool, FC120, FC84, FC10)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes),
    )


def lenetv2(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """Model D of Table A1: LeNetV2 (Conv3x3-32, maxpool, Conv3x3-64, maxpool, FC128, Dropout(0.25), FC10)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 5 * 5, 128), nn.ReLU(),
        nn.Dropout(0.25),
        nn.Linear(128, num_classes),
    )


def tinymlp(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """A 40-20 ReLU MLP small enough for exact minimal distances by mixed-integer programming (edgewise.exact)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_channels * 28 * 28, 40), nn.ReLU(),
        nn.Linear(40, 20), nn.ReLU(),
        nn.Linear(20, num_classes),
    )


def tinycnn(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """Conv5x5-4 (stride 3), maxpool2, FC20: a CNN small enough for exact minimal distances (edgewise.exact)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 5, stride=3), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 20), nn.ReLU(),
        nn.Linear(20, num_classes),
    )


class KWinnersTakeAll(nn.Module):
    """k-WTA activation (Xiao et al., ICLR 2020, eq. 1): per sample, the k = ⌈γ·N⌉ largest of the layer's N
    activations pass, the others are set to 0; a convolutional layer's C×H×W map is one vector (their sec. 3).

    The winners change discontinuously with the input, so the gradient at a point says little about the
    network a step away: the defense is gradient masking (Tramèr et al. 2020), not robustness.
    """

    def __init__(self, ratio: float) -> None:
        super().__init__()
        if not 0 < ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {ratio}")
        self.ratio = ratio

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        flat = inputs.flatten(1)
        k = max(1, int(self.ratio * flat.shape[1] + 0.999999))
        threshold = flat.topk(k, dim=1).values[:, -1:]
        return (flat * (flat >= threshold)).view_as(inputs)


class Quantize(nn.Module):
    """Round the (normalized) input to multiples of ``step``: its gradient is 0 almost everywhere (torch.round),
    so gradient attacks see a flat loss; the classic gradient-masking defense (Athalye et al. 2018, sec. 4.1)."""

    def __init__(self, step: float) -> None:
        super().__init__()
        if step <= 0:
            raise ValueError(f"step must be positive, got {step}")
        self.step = step

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.round(inputs / self.step) * self.step


def kwta(network: nn.Sequential) -> nn.Sequential:
    """``network`` with every ReLU replaced by k-WTA at sparsity γ = 0.1 (Xiao et al. 2020, their default)."""
    return nn.Sequential(*(KWinnersTakeAll(0.1) if isinstance(layer, nn.ReLU) else layer for layer in network))


def quantized(network: nn.Sequential) -> nn.Sequential:
    """``network`` behind an input quantization to steps of 0.25 of the normalized input (0.088 of the [0, 1]
    range with the zoo's Fashion-MNIST std 0.353, about 12 levels)."""
    return nn.Sequential(Quantize(0.25), *network)


def smallcnn_kwta(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """The small CNN with every ReLU replaced by k-WTA at sparsity γ = 0.1 (Xiao et al. 2020, their default)."""
    return kwta(smallcnn(in_channels, num_classes))


def smallcnn_quantized(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """The small CNN behind an input quantization to steps of 0.25 of the normalized input (0.088 of the [0, 1]
    range with the zoo's Fashion-MNIST std 0.353, about 12 levels)."""
    return quantized(smallcnn(in_channels, num_classes))


def lenet_kwta(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """LeNet with every ReLU replaced by k-WTA at sparsity γ = 0.1 (Xiao et al. 2020, their default)."""
    return kwta(lenet(in_channels, num_classes))


def lenet_quantized(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """LeNet behind an input quantization to steps of 0.25 of the normalized input (about 12 levels)."""
    return quantized(lenet(in_channels, num_classes))


def mlp_kwta(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """Model A's MLP with every ReLU replaced by k-WTA at sparsity γ = 0.1 (Xiao et al. 2020, their default)."""
    return kwta(mlp(in_channels, num_classes))


def mlp_quantized(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """Model A's MLP behind an input quantization to steps of 0.25 of the normalized input (about 12 levels)."""
    return quantized(mlp(in_channels, num_classes))


ARCHITECTURES = {"smallcnn": smallcnn, "mlp": mlp, "allcnn": allcnn, "lenet": lenet, "lenetv2": lenetv2,
                 "smallcnn_kwta": smallcnn_kwta, "smallcnn_quantized": smallcnn_quantized,
                 "lenet_kwta": lenet_kwta, "lenet_quantized": lenet_quantized,
                 "mlp_kwta": mlp_kwta, "mlp_quantized": mlp_quantized,
                 "tinymlp": tinymlp, "tinycnn": tinycnn}
