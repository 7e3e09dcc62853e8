"""LPIPS, the learned perceptual distance of Zhang et al. (CVPR 2018, arXiv:1801.03924), used by the ALMA paper.

For a network with L tapped layers whose activations are y_l (C_l channels, H_l × W_l positions), LPIPS (eq. 1 of
Zhang et al.) is ``sum_l mean_{h,w} || w_l ⊙ (ŷ_l(x) - ŷ_l(x'))[h, w] ||²`` where ŷ_l are the activations unit-
normalized along the channels (ŷ = y / (||y||₂ + 1e-10)) and w_l are per-channel linear heads:

- calibrated (``calibrated=True``): the heads trained on human judgments, shipped with the ``lpips`` package (v0.1);
- uncalibrated (``calibrated=False``): w_l = 1, i.e. the channel sum of the squared differences ("baseline" of the
  ``lpips`` package, ``lpips=False``); the ALMA paper (Rony et al., arXiv:2011.11857, sec. 2) used this variant.

Both match ``lpips.LPIPS(net=..., lpips=calibrated)(x, x', normalize=True)`` of the ``lpips`` package 0.1.4 given
the same weights: inputs in [0, 1] are mapped to [-1, 1] and then shifted and scaled per channel as the package's
``ScalingLayer`` does; the backbones are torchvision's AlexNet (default) or VGG16 ``features``, tapped after the
ReLUs that the package uses. Gray inputs (one channel) are repeated to three channels.

Offline variant (``features=model``): the same distance without heads on the activations of an edgewise zoo model
(an ``nn.Sequential``, nested ones flattened): the outputs of all its ReLU layers, i.e. everything before the
classifier head, on the model's own input (the model normalizes inside). No download is needed.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from edgewise.distances.registry import DistanceFn
from edgewise.validation import check_choice

# Indices in torchvision's ``features`` of the ReLUs tapped by the lpips package (relu1 .. relu5; relu1_2 ..
# relu5_3 for VGG16), and the files of torchvision's ImageNet weights in the torch hub cache.
TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
WEIGHT_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
_TORCHVISION_BUILDERS = {"alex": "alexnet", "vgg": "vgg16"}
# The smallest height and width whose activations reach the last tap: AlexNet's conv 11/4 (padding 2) and two
# max-pools 3/2 leave floor((floor((floor((H - 7) / 4) + 1 - 3) / 2) + 1 - 3) / 2) + 1 >= 1 rows for H >= 31;
# VGG16's four 2×2 max-pools before relu5_3 leave floor(H / 16) >= 1 for H >= 16.
MIN_SIZE = {"alex": 31, "vgg": 16}
# lpips package ``ScalingLayer``: (x - shift) / scale on inputs in [-1, 1].
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10  # added to the channel norm, as in the lpips package


def _unit(features: torch.Tensor) -> torch.Tensor:
    """Activations divided by their ℓ2 norm along the channels (dim 1), ``y / (||y|| + 1e-10)``."""
    squared = features.square().sum(1, keepdim=True)
    # Trap: ReLU activations are often all zero at a position; sqrt'(0) = inf and inf * 0 = NaN in backward (the
    # lpips package has this NaN). Take the root of a positive stand-in and use norm 0 there: same values.
    positive = squared > 0
    norm = torch.where(positive, torch.where(positive, squared, 1).sqrt(), 0)
    return features / (norm + _EPS)


class LPIPSNetwork(nn.Module):
    """Layers run in order; the outputs of the layers at ``taps`` are compared (eq. 1 of Zhang et al.).

    ``heads``: one per tap, per-channel weights w_l (shape ``(C_l,)`` or the lpips package's ``(1, C_l, 1, 1)``);
    ``None`` for the uncalibrated distance. ``scaling``: map inputs in [0, 1] to the lpips package's input
    (``2x - 1``, then its ScalingLayer), for ImageNet backbones; ``False`` feeds the inputs unchanged.
    """

    def __init__(self, layers: Sequence[nn.Module], taps: Sequence[int], heads: Sequence[torch.Tensor] | None = None,
                 *, scaling: bool = True) -> None:
        super().__init__()
        if not taps or sorted(set(taps)) != list(taps) or taps[0] < 0 or taps[-1] >= len(layers):
            raise ValueError(f"taps must be increasing indices into the {len(layers)} layers, got {list(taps)}")
        if heads is not None and len(heads) != len(taps):
            raise ValueError(f"heads must have one tensor per tap ({len(taps)}), got {len(heads)}")
        self.layers = nn.ModuleList(layers[: taps[-1] + 1])
        self.taps = tuple(taps)
        self.scaling = scaling
        self.heads = None if heads is None else nn.ParameterList(
            nn.Parameter(h.detach().reshape(-1).clone(), requires_grad=False) for h in heads)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalized activations at the taps, each ``(B, C_l, H_l, W_l)`` (vectors become ``(B, C, 1, 1)``)."""
        h = images
        if self.scaling:
            h = h.expand(-1, 3, -1, -1) if h.shape[1] == 1 else h
            shift = torch.tensor(_SHIFT, dtype=h.dtype, device=h.device).view(1, 3, 1, 1)
            scale = torch.tensor(_SCALE, dtype=h.dtype, device=h.device).view(1, 3, 1, 1)
            h = (2 * h - 1 - shift) / scale
        out = []
        for index, layer in enumerate(self.layers):
            h = layer(h)
            if index in self.taps:
                out.append(_unit(h.reshape(*h.shape[:2], *h.shape[2:], *(1,) * (4 - h.dim()))))
        return out

    def compare(self, reference: list[torch.Tensor], perturbed: list[torch.Tensor]) -> torch.Tensor:
        """LPIPS between tapped features: per layer, (weighted) channel sum of squared differences, spatial mean."""
        total = reference[0].new_zeros(reference[0].shape[0])
        for index, (r, p) in enumerate(zip(reference, perturbed, strict=True)):
            squared = (p - r).square()
            if self.heads is None:
                per_position = squared.sum(1)
            else:
                per_position = torch.einsum("bchw,c->bhw", squared, self.heads[index].to(squared.dtype))
            total = total + per_position.flatten(1).mean(1)
        return total

    def bind(self, reference: torch.Tensor) -> DistanceFn:
        """``perturbed -> (B,)`` LPIPS to ``reference``, whose features are computed once (without gradient)."""
        with torch.no_grad():
            reference_features = self.features(reference)
        return lambda perturbed: self.compare(reference_features, self.features(perturbed))


def _torch_hub_checkpoint(net: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHT_FILES[net]


def _lpips_heads(net: str) -> list[torch.Tensor]:
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        raise RuntimeError("calibrated LPIPS needs the linear heads shipped with the `lpips` package, which is not "
                           "installed: `pip install lpips`, or use calibrated=False")
    path = Path(spec.origin).parent / "weights" / "v0.1" / f"{net}.pth"
    if not path.is_file():
        raise RuntimeError(f"calibrated LPIPS: the lpips package has no heads file {path}; reinstall it "
                           "(`pip install --force-reinstall lpips`), or use calibrated=False")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return [state[f"lin{k}.model.1.weight"] for k in range(len(TAPS[net]))]


@functools.lru_cache(maxsize=8)
def _pretrained(checkpoint: str, net: str, calibrated: bool, dtype: torch.dtype,
                device: torch.device) -> LPIPSNetwork:
    if importlib.util.find_spec("torchvision") is None:
        raise RuntimeError("LPIPS with net='alex' or 'vgg' needs torchvision: `pip install torchvision`")
    import torchvision

    features = getattr(torchvision.models, _TORCHVISION_BUILDERS[net])(weights=None).features
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    # Only the convolutional part is used: load the "features." entries (strict: a wrong file fails here).
    features.load_state_dict({k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")})
    heads = _lpips_heads(net) if calibrated else None
    network = LPIPSNetwork(list(features), TAPS[net], heads).to(dtype=dtype, device=device).eval()
    return network.requires_grad_(False)


def pretrained_network(net: str = "alex", *, calibrated: bool = True, dtype: torch.dtype = torch.float32,
                       device: torch.device | str = "cpu") -> LPIPSNetwork:
    """The LPIPS network on torchvision's ImageNet AlexNet/VGG16 from the torch hub cache, never downloading."""
    check_choice("net", net, tuple(TAPS))
    checkpoint = _torch_hub_checkpoint(net)
    if not checkpoint.is_file():
        builder = _TORCHVISION_BUILDERS[net]
        raise RuntimeError(
            f"LPIPS net={net!r} needs torchvision's ImageNet weights {checkpoint.name}, not found in the torch hub "
            f"cache ({checkpoint.parent}; set by TORCH_HOME). On a machine with network access run `python -c "
            f"\"import torchvision; torchvision.models.{builder}(weights='IMAGENET1K_V1')\"` and copy the file there, "
            f"or measure LPIPS offline on an edgewise model: distances.get('lpips', features=load_model(...))")
    return _pretrained(os.fspath(checkpoint), net, calibrated, dtype, torch.device(device))


def _flatten(module: nn.Module) -> list[nn.Module]:
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _flatten(child)]
    return [module]


def model_network(model: nn.Module) -> LPIPSNetwork:
    """Uncalibrated LPIPS on the ReLU activations of an ``nn.Sequential`` model (nested ones flattened)."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"features must be an nn.Sequential model (as the edgewise zoo), got {type(model).__name__}")
    if model.training:
        raise ValueError("features model must be in eval mode (call model.eval()), got a model in training mode")
    layers = _flatten(model)
    taps = [i for i, layer in enumerate(layers) if isinstance(layer, nn.ReLU)]
    if not taps:
        raise ValueError("features model must contain nn.ReLU layers to tap, got none")
    return LPIPSNetwork(layers, taps, None, scaling=False)


def check_backbone_input(reference: torch.Tensor, net: str) -> None:
    """Images the ImageNet backbone ``net`` takes: (B, 1 or 3, H, W) with H, W >= ``MIN_SIZE[net]`` (smaller ones
    failed deep in a max-pool with torch's "Output size is too small")."""
    if reference.dim() != 4 or reference.shape[1] not in (1, 3):
        raise ValueError(f"reference must have shape (B, 1 or 3, H, W) for LPIPS net={net!r}, got "
                         f"{tuple(reference.shape)}")
    if min(reference.shape[-2:]) < MIN_SIZE[net]:
        raise ValueError(f"reference must be at least {MIN_SIZE[net]}x{MIN_SIZE[net]} for LPIPS net={net!r} (its "
                         f"last tapped layer is empty below), got {tuple(reference.shape[-2:])}: resize the images "
                         "(--resize), or measure LPIPS on an edgewise model that takes them (features=model)")


def lpips(reference: torch.Tensor, *, net: str = "alex", calibrated: bool | None = None,
          features: nn.Module | None = None) -> DistanceFn:
    """Factory of the LPIPS distance to ``reference`` ``(B, C, H, W)`` in [0, 1] → ``perturbed -> (B,)``.

    ``net``: "alex" (AlexNet, default, as in the ALMA paper) or "vgg" (VGG16), for images of at least 31 × 31 and
    16 × 16 pixels (``MIN_SIZE``). ``calibrated``: linear heads of the
    lpips package (True, the default with ``net``) or the plain channel sum (False). ``features``: an edgewise
    model whose ReLU activations replace the ImageNet backbone (always uncalibrated; ``net`` does not apply).
    """
    if features is not None:
        if calibrated:
            raise ValueError("features=model has no calibrated heads: calibrated must be False or left out with "
                             f"features, got {calibrated!r}")
        return model_network(features).bind(reference)
    check_choice("net", net, tuple(TAPS))
    check_backbone_input(reference, net)
    network = pretrained_network(net, calibrated=True if calibrated is None else calibrated, dtype=reference.dtype,
                                 device=reference.device)
    return network.bind(reference)
