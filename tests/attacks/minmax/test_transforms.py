"""Transformations of D.3 against independent computations, gradcheck, and the transformation attack."""

from __future__ import annotations

import math

import kornia
import pytest
import torch
from torch import nn

from edgewise.attacks.minmax import DEFAULTS, TRANSFORMS, apply_transform, transform_attack
from edgewise.attacks.minmax.transforms import center_crop


def _images(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand(3, 1, 9, 9, generator=torch.Generator().manual_seed(0), dtype=dtype)


def test_deterministic_pixel_transforms() -> None:
    x = _images()
    torch.testing.assert_close(apply_transform("hflip", x), x.flip(-1))
    torch.testing.assert_close(apply_transform("vflip", x), x.flip(-2))
    torch.testing.assert_close(apply_transform("brightness", x), (x + 0.1).clamp(0, 1))
    torch.testing.assert_close(apply_transform("gamma", x), x**1.3)
    torch.testing.assert_close(apply_transform("identity", x), x)


def test_center_crop_of_a_ramp() -> None:
    # I(row, col) = col: the central 0.8 resized back is the affine map col -> c + 0.8 (col − c), c = (W − 1)/2.
    width = 9
    ramp = torch.arange(width, dtype=torch.float64).expand(1, 1, width, width).contiguous() / (width - 1)
    centre = (width - 1) / 2
    expected = (centre + 0.8 * (torch.arange(width, dtype=torch.float64) - centre)) / (width - 1)
    torch.testing.assert_close(apply_transform("crop", ramp)[0, 0], expected.expand(width, width))


def test_rotation_is_thirty_degrees_clockwise() -> None:
    # A dot above the centre: 30° clockwise (y axis down) moves it right by r sin 30° and down by r (1 − cos 30°).
    size, radius = 41, 12
    image = torch.zeros(1, 1, size, size, dtype=torch.float64)
    image[0, 0, 20 - radius, 20] = 1.0
    rotated = apply_transform("rotation", image)[0, 0]
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    mass = rotated.sum()
    col = float((rotated * cols).sum() / mass) - 20
    row = float((rotated * rows).sum() / mass) - 20
    assert math.isclose(col, radius * math.sin(math.radians(30)), abs_tol=0.3)
    assert math.isclose(row, -radius * math.cos(math.radians(30)), abs_tol=0.3)


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transforms_are_differentiable(name: str) -> None:
    x = (0.1 + 0.8 * _images(torch.float64)[:1, :, :5, :5]).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: apply_transform(name, v), (x,))


def test_random_transforms_follow_the_generator() -> None:
    x = _images()
    for name in ("hflip", "crop", "rotation"):
        first = apply_transform(name, x, random=True, generator=torch.Generator().manual_seed(3))
        second = apply_transform(name, x, random=True, generator=torch.Generator().manual_seed(3))
        assert torch.equal(first, second)
    flips = [apply_transform("hflip", x[:1], random=True, generator=torch.Generator().manual_seed(s)) for s in
             range(40)]
    flipped = sum(bool(torch.equal(f, x[:1].flip(-1))) for f in flips)
    assert 20 <= flipped <= 40  # probability 0.8


def _model() -> nn.Module:
    generator = torch.Generator().manual_seed(1)
    layer = nn.Linear(81, 4)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(4, 81, generator=generator))
        layer.bias.zero_()
    return nn.Sequential(nn.Flatten(), layer).eval()


@pytest.mark.parametrize("strategy", ["minmax", "average"])
def test_transform_attack_fooled_is_reverified(strategy: str) -> None:
    x, model = _images(), _model()
    y = torch.tensor([0, 1, 2])
    names = ["identity", "hflip", "crop", "rotation"]
    result = transform_attack(model, x, y, transforms=names, norm="linf", eps=0.05, steps=5, strategy=strategy)
    with torch.no_grad():
        fooled = torch.stack([model(apply_transform(n, result.adv)).argmax(1) != y for n in names], 1)
    assert torch.equal(result.fooled, fooled) and result.weights.shape == (3, 4)
    assert float((result.adv - x).abs().max()) <= 0.05 + 1e-6


def test_random_transform_attack_is_reproducible() -> None:
    x, model, y = _images(), _model(), torch.tensor([0, 1, 2])
    runs = [transform_attack(model, x, y, transforms=["crop", "rotation"], random=True, steps=3,
                             generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(runs[0].adv, runs[1].adv)


def test_linf_defaults_are_those_of_tables_a4_a5() -> None:
    # 20-step ℓ∞-APGDA over transformations: α = 1/2, β = 1/100, γ = 10, not the ensemble values of D.2.
    x, model, y = _images(), _model(), torch.tensor([0, 1, 2])
    names = ["identity", "hflip", "crop"]
    default = transform_attack(model, x, y, transforms=names, eps=0.05, steps=4)
    explicit = transform_attack(model, x, y, transforms=names, eps=0.05, steps=4, step_size=1 / 2,
                                weight_step=1 / 100, gamma=10.0)
    assert torch.equal(default.history, explicit.history) and torch.equal(default.adv, explicit.adv)
    ensemble = transform_attack(model, x, y, transforms=names, eps=0.05, steps=4, **DEFAULTS["linf"])
    assert not torch.equal(default.history, ensemble.history)


def test_bad_transforms() -> None:
    x, model, y = _images(), _model(), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="transforms must be names among"):
        transform_attack(model, x, y, transforms=["shear"])
    with pytest.raises(TypeError, match="transforms must be a non-empty list"):
        transform_attack(model, x, y, transforms="hflip")
    with pytest.raises(ValueError, match=r"inputs must be images \(B, C, H, W\)"):
        transform_attack(nn.Flatten().eval(), x.flatten(1), y)
    with pytest.raises(TypeError, match="random must be a bool, got str"):  # "no" would draw random transforms
        transform_attack(model, x, y, random="no")
    with pytest.raises(ValueError, match=r"model must be in eval mode \(call model\.eval\(\)\)"):
        transform_attack(model.train(), x, y)


@pytest.mark.parametrize("random", [False, True])
def test_transforms_follow_the_images_device(random: bool) -> None:
    # With "meta" as the default device, a draw or a fill made without device= meets the CPU images and fails, as
    # it would on a GPU: this runs the device check on a CPU-only machine.
    x = _images()
    for name in sorted(TRANSFORMS):
        expected = apply_transform(name, x, random=random, generator=torch.Generator().manual_seed(5))
        with torch.device("meta"):
            found = apply_transform(name, x, random=random, generator=torch.Generator().manual_seed(5))
        assert found.device == x.device and torch.equal(found, expected), name


def test_every_random_transform_follows_the_generator() -> None:
    # 24 images: a draw from another source than the generator repeats the same 0.8-coin flips with probability
    # (0.8² + 0.2²)^24 < 1e-3.
    x = torch.rand(24, 1, 9, 9, generator=torch.Generator().manual_seed(1))
    for name in sorted(TRANSFORMS):
        first = apply_transform(name, x, random=True, generator=torch.Generator().manual_seed(3))
        torch.manual_seed(11)  # the global generator, moved between the calls
        second = apply_transform(name, x, random=True, generator=torch.Generator().manual_seed(3))
        assert torch.equal(first, second), name


def test_random_rotation_and_crop_draw_from_their_ranges() -> None:
    # Module docstring (Table A4): a crop fraction uniform in [0.6, 1.0], a rotation uniform in [-10°, 10°], one
    # draw per image from the generator.
    x = _images(torch.float64)
    draw = torch.rand(3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    rotated = apply_transform("rotation", x, random=True, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(rotated, kornia.geometry.transform.rotate(x, -10 + 20 * draw), rtol=0, atol=1e-12)
    cropped = apply_transform("crop", x, random=True, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(cropped, center_crop(x, 0.6 + 0.4 * draw), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["crop", "rotation"])
def test_random_draws_do_not_depend_on_the_default_dtype(name: str) -> None:
    x = torch.rand(20, 1, 9, 9, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = apply_transform(name, x, random=True, generator=torch.Generator().manual_seed(6))
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        found = apply_transform(name, x, random=True, generator=torch.Generator().manual_seed(6))
    finally:
        torch.set_default_dtype(default)
    assert torch.equal(found, expected)


def test_random_transform_attack_without_generator_leaves_the_global_rng_alone() -> None:
    # DESIGN: attacks never draw from the global RNG; generator=None is a generator seeded with 0, as in pgd/apgd.
    x, model, y = _images(), _model(), torch.tensor([0, 1, 2])
    torch.manual_seed(5)
    state = torch.get_rng_state()
    runs = [transform_attack(model, x, y, transforms=["crop", "rotation", "hflip"], random=True, steps=3)
            for _ in range(2)]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(runs[0].adv, runs[1].adv)

class _SideModel(nn.Module):
    """Class 0 when the left half is brighter than the right half, else class 1 (no parameters)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        half = images.shape[-1] // 2
        side = images[..., :half].sum((1, 2, 3)) - images[..., half:].sum((1, 2, 3))
        return torch.stack([side, -side], 1)


def test_random_transform_fooled_is_judged_on_a_fresh_draw() -> None:
    # Left half 1, right half 0, label 0: the model is fooled exactly when the random hflip is applied (probability
    # 0.8), whatever δ with ‖δ‖∞ = 0.01 does. The best of the T + 1 iterates chosen on their own draws is almost
    # surely one that was flipped (1 − 0.2²¹); a fresh draw at the returned inputs fools with probability 0.8.
    count = 400
    x = torch.zeros(count, 1, 4, 4)
    x[..., :2] = 1.0
    y = torch.zeros(count, dtype=torch.long)
    result = transform_attack(_SideModel().eval(), x, y, transforms=["hflip"], random=True, eps=0.01, steps=20,
                              generator=torch.Generator().manual_seed(0))
    rate = float(result.fooled.double().mean())
    assert abs(rate - 0.8) < 4 * math.sqrt(0.8 * 0.2 / count), rate

def test_non_image_inputs_are_refused_before_the_model_runs() -> None:
    conv = nn.Sequential(nn.Conv2d(1, 4, 9), nn.Flatten()).eval()
    x, y = _images(), torch.tensor([0, 1, 2])
    for bad in (x[:, 0], x[:, None]):
        with pytest.raises(ValueError, match=r"inputs must be images \(B, C, H, W\)"):
            transform_attack(conv, bad, y, steps=1)
