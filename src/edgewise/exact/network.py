"""A PyTorch ReLU network as a list of affine maps, ReLUs and max-poolings over flattened vectors (float64).

Every module that is affine in eval mode (Linear, Conv, Normalize, BatchNorm, Flatten, Dropout, ...) is read
off by probing it with the unit vectors, and consecutive affine maps are composed into one: this is how
Normalize and BatchNorm are folded into the neighbouring Linear/Conv layer. The result is checked against the
model's own forward on the inputs it will be used for.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse
from torch import nn
from torch.nn import functional as F

from edgewise.models.wrappers import Normalize, RepeatChannels, leaves

AFFINE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Flatten, nn.Unflatten, nn.Dropout,
    nn.Identity, nn.AvgPool2d, Normalize, RepeatChannels,
)
SUPPORTED = "Linear, Conv1d, Conv2d, BatchNorm1d/2d, Normalize, Flatten, Dropout, AvgPool2d, ReLU, MaxPool2d"
PROBE_CHUNK = 256


@dataclass(frozen=True)
class Affine:
    """``z = weight @ a + bias`` (weight sparse, out × in)."""

    weight: sparse.csr_matrix
    bias: np.ndarray


@dataclass(frozen=True)
class ReLU:
    """Elementwise max(0, ·)."""


@dataclass(frozen=True)
class MaxPool:
    """``y[o] = max(a[groups[o, k]])`` over the entries of row o that are >= 0 (-1: padding)."""

    groups: np.ndarray


Layer = Affine | ReLU | MaxPool


@dataclass(frozen=True)
class Network:
    layers: list[Layer]
    input_size: int
    num_classes: int


def _probe_affine(module: nn.Module, shape: tuple[int, ...]) -> Affine:
    size = int(np.prod(shape))
    with torch.no_grad():
        bias = module(torch.zeros(1, *shape, dtype=torch.float64)).flatten(1)[0]
        blocks = []
        for start in range(0, size, PROBE_CHUNK):
            stop = min(start + PROBE_CHUNK, size)
            basis = torch.zeros(stop - start, size, dtype=torch.float64)
            basis[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
            columns = module(basis.view(-1, *shape)).flatten(1) - bias
            blocks.append(sparse.csc_matrix(columns.T.numpy()))
    return Affine(sparse.hstack(blocks).tocsr(), bias.numpy().copy())


def _maxpool_groups(module: nn.MaxPool2d, shape: tuple[int, ...]) -> np.ndarray:
    if module.ceil_mode or len(shape) != 3:
        raise ValueError(f"edgewise.exact supports MaxPool2d on (C, H, W) inputs without ceil_mode, got {module} "
                         f"on input shape {shape}")
    channels = shape[0]
    index = torch.arange(1, int(np.prod(shape)) + 1, dtype=torch.float64).view(channels, 1, *shape[1:])
    columns = F.unfold(index, module.kernel_size, dilation=module.dilation, padding=module.padding,
                       stride=module.stride)
    # (C, k, L) -> (C * L, k): output unit c * L + l pools the window l of channel c (torch's C×H×W order).
    groups = columns.permute(0, 2, 1).reshape(-1, columns.shape[1]).long().numpy() - 1
    return groups


def _compose(first: Affine, second: Affine) -> Affine:
    return Affine((second.weight @ first.weight).tocsr(), second.weight @ first.bias + second.bias)


def check_own_forward(name: str, module: nn.Module) -> None:
    """ValueError where ``module``'s class overrides the forward of the supported class it would be read as (a
    Sequential, ReLU, MaxPool2d or affine module), or where it has forward hooks: its modules or its probes would
    stand for another function, which the check on the inputs alone may not reveal."""
    kinds: tuple[type[nn.Module], ...] = (nn.Sequential, nn.ReLU, nn.MaxPool2d, *AFFINE_MODULES)
    base = next((kind for kind in kinds if isinstance(module, kind)), None)
    if base is not None and type(module).forward is not base.forward:
        raise ValueError(f"model: edgewise.exact reads module {name!r} as a {base.__name__}, but its class "
                         f"{type(module).__name__} overrides forward; use the plain {base.__name__}")
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and module.running_mean is None:
        raise ValueError(f"model: module {name!r} is a {type(module).__name__} without running statistics "
                         f"(track_running_stats=False): it normalizes each batch by its own statistics, which is "
                         f"no affine map of one input")
    if module._forward_hooks or module._forward_pre_hooks:
        raise ValueError(f"model: module {name!r} has forward hooks, which edgewise.exact's reading of the layers "
                         f"does not run (or reads as part of an affine map); remove them")


def network_from_module(model: nn.Module, input_shape: tuple[int, ...]) -> Network:
    """The layers of ``model`` (an nn.Sequential, nested ones allowed) for inputs of ``input_shape`` (no batch)."""
    for name, container in model.named_modules():
        if isinstance(container, nn.Sequential):
            check_own_forward(name or "model", container)
    probe = copy.deepcopy(model).cpu().double().eval()  # read on the CPU, like the zeros and unit vectors
    layers: list[Layer] = []
    shape = tuple(input_shape)
    with torch.no_grad():
        for name, module in leaves(probe):
            check_own_forward(name, module)
            if isinstance(module, nn.ReLU):
                layers.append(ReLU())
            elif isinstance(module, nn.MaxPool2d):
                layers.append(MaxPool(_maxpool_groups(module, shape)))
            elif isinstance(module, AFFINE_MODULES):
                affine = _probe_affine(module, shape)
                if layers and isinstance(layers[-1], Affine):
                    layers[-1] = _compose(layers[-1], affine)
                else:
                    layers.append(affine)
            else:
                raise ValueError(f"model: edgewise.exact supports networks of {SUPPORTED}; module {name!r} is "
                                 f"{type(module).__name__}")
            shape = tuple(module(torch.zeros(1, *shape, dtype=torch.float64)).shape[1:])
    if not layers or not isinstance(layers[0], Affine) or not isinstance(layers[-1], Affine):
        raise ValueError("model: edgewise.exact needs a network that starts and ends with an affine layer")
    if len(shape) != 1:
        raise ValueError(f"model must return logits of shape (B, classes), got per-sample shape {shape}")
    return Network(layers, int(np.prod(input_shape)), shape[0])


def forward(network: Network, inputs: np.ndarray) -> np.ndarray:
    """Logits of the flattened ``inputs`` (B, D) by the layer list (float64): checks the conversion."""
    values = inputs.T
    for layer in network.layers:
        if isinstance(layer, Affine):
            values = layer.weight @ values + layer.bias[:, None]
        elif isinstance(layer, ReLU):
            values = np.maximum(values, 0.0)
        else:
            padded = np.vstack([values, np.full((1, values.shape[1]), -np.inf)])
            values = padded[layer.groups].max(axis=1)
    return np.asarray(values.T)


def check_network(network: Network, model: nn.Module, inputs: torch.Tensor) -> None:
    """ValueError unless the layer list computes the model's logits on ``inputs`` (to float precision)."""
    with torch.no_grad():
        expected = model(inputs).double().cpu().numpy()
    got = forward(network, inputs.detach().double().cpu().flatten(1).numpy())
    scale = 1.0 + np.abs(expected).max()
    tolerance = (1e-4 if inputs.dtype == torch.float32 else 1e-9) * scale
    error = np.abs(got - expected).max()
    if error > tolerance:
        raise ValueError(f"model: its forward is not the sequence of its modules (logits differ by {error:.3g} "
                         f"from the layer-by-layer reading); edgewise.exact needs a plain nn.Sequential network")


def checked_network(model: nn.Module, inputs: torch.Tensor) -> Network:
    """The layer list of ``model`` for inputs of ``inputs``' shape, checked to compute its logits on ``inputs``
    (a ValueError, before any solver or attack runs, where the mixed-integer program cannot express it)."""
    network = network_from_module(model, tuple(inputs.shape[1:]))
    check_network(network, model, inputs)
    return network
