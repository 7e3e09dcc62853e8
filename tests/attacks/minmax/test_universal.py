"""Universal attack: one δ per group of K inputs, grouped in order; feasibility; bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgewise.attacks.minmax import universal_attack


def _model() -> nn.Module:
    generator = torch.Generator().manual_seed(0)
    layer = nn.Linear(16, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(3, 16, generator=generator))
        layer.bias.zero_()
    return nn.Sequential(nn.Flatten(), layer).eval()


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = 0.2 + 0.6 * torch.rand(12, 1, 4, 4, generator=generator)  # interior: ‖δ‖∞ = 0.1 never clips
    return x, torch.randint(0, 3, (12,), generator=generator)


def test_one_perturbation_per_group() -> None:
    x, y = _data()
    result = universal_attack(_model(), x, y, group_size=4, norm="linf", eps=0.1, steps=5)
    assert result.adv.shape == x.shape and result.weights.shape == (3, 4) and result.fooled.shape == (3, 4)
    delta = (result.adv - x).view(3, 4, 16)
    torch.testing.assert_close(delta, delta[:, :1].expand_as(delta), atol=1e-6, rtol=0)
    assert float(delta.abs().max()) <= 0.1 + 1e-6
    with torch.no_grad():
        fooled = (_model()(result.adv).argmax(1) != y).view(3, 4)
    assert torch.equal(result.fooled, fooled)


def test_clipped_images_stay_within_the_ball() -> None:
    x, y = _data()
    x = x.round()  # pixels at 0 and 1: the shared δ gets clipped on some images
    result = universal_attack(_model(), x, y, group_size=3, norm="l2", eps=0.5, steps=5)
    assert float(result.adv.min()) >= 0 and float(result.adv.max()) <= 1
    assert float((result.adv - x).flatten(1).norm(dim=1).max()) <= 0.5 + 1e-5


def test_bad_group_size() -> None:
    x, y = _data()
    with pytest.raises(ValueError, match="multiple of group_size=5"):
        universal_attack(_model(), x, y, group_size=5)
    with pytest.raises(ValueError, match="group_size must be > 0"):
        universal_attack(_model(), x, y, group_size=0)
