"""torchvision's ResNet-18 adapted to 32×32 images (the model of docs/own-model.md and own_model_e2e.py).

As CIFAR-10 ResNets usually are (He et al., 2016, sec. 4.2): a 3×3 stride-1 first convolution and no max-pool,
so that the last stage still sees 4×4 features. Loaded as ``--model benchmarks/cifar_resnet18.py:cifar_resnet18``.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18


def cifar_resnet18(num_classes: int = 10) -> nn.Module:
    model = resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model
