import copy

import pytest
import torch

from edgewise.attacks import fmn
from edgewise.models import CountingModel, load_model
from edgewise.models.architectures import Quantize

NORMS = ("l1", "l2", "linf")


def lp_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return {"l1": flat.abs().sum(1), "l2": flat.norm(dim=1), "linf": flat.abs().amax(1)}[norm]


@pytest.mark.parametrize("norm", NORMS)
def test_oracle_within_1_percent_of_the_closed_form(linear_oracle, bend, norm: str) -> None:
    o = linear_oracle
    model = bend(o.model)
    adv = fmn(model, o.inputs, o.labels, norm=norm, steps=200)
    assert bool((model(adv).argmax(1) != o.labels).all())
    ratio = lp_norm(adv - o.inputs, norm) / getattr(o, norm)
    assert float(ratio.max()) <= 1.01 and float(ratio.min()) >= 1 - 1e-4


@pytest.mark.parametrize("norm", NORMS)
def test_box_active_oracle_within_1_percent(box_oracle, norm: str) -> None:
    # The exact projection onto {‖δ‖p ≤ ε} ∩ box reaches the box-constrained optimum. For ℓ2, projecting on the
    # ball and then clipping (the paper's δ-step, and adv-lib's) finds no adversarial on this oracle (for ℓ∞ the
    # two are the same coordinate-wise clip).
    o = box_oracle
    adv = fmn(o.model, o.inputs, o.labels, norm=norm, steps=200)
    assert bool((o.model(adv).argmax(1) != o.labels).all())
    ratio = lp_norm(adv - o.inputs, norm) / getattr(o, norm)
    assert float(ratio.max()) <= 1.01 and float(ratio.min()) >= 1 - 1e-4


@pytest.mark.parametrize("norm", NORMS)
def test_targeted_oracle(linear_oracle, bend, norm: str) -> None:
    o = linear_oracle
    model, targets = bend(o.model), 1 - o.labels
    adv = fmn(model, o.inputs, targets, norm=norm, steps=200, targeted=True)
    assert bool((model(adv).argmax(1) == targets).all())
    assert float((lp_norm(adv - o.inputs, norm) / getattr(o, norm)).max()) <= 1.01


@pytest.mark.parametrize("norm", NORMS)
def test_from_a_far_adversarial_start_it_shrinks_to_the_closed_form(linear_oracle, bend, norm: str) -> None:
    # Adversarial starting points three times as far as the ℓ2 optimum (a spread δ, inside the box):
    # ε₀ = ‖δ₀‖p, and the ε-steps shrink it to the closed-form ℓp minimum; the first step sees the start itself.
    o = linear_oracle
    model = bend(o.model)
    start = (o.inputs + 3 * (fmn(model, o.inputs, o.labels, norm="l2", steps=200) - o.inputs)).clamp(0, 1)
    assert bool((model(start).argmax(1) != o.labels).all())
    seen: dict[int, torch.Tensor] = {}
    adv = fmn(model, o.inputs, o.labels, norm=norm, steps=200, starting_points=start,
              callback=lambda step, state: seen.setdefault(step, state["best_distance"].clone()))
    torch.testing.assert_close(seen[0], lp_norm(start - o.inputs, norm))
    assert bool((model(adv).argmax(1) != o.labels).all())
    ratio = lp_norm(adv - o.inputs, norm) / getattr(o, norm)
    assert float(ratio.max()) <= 1.01 and float(ratio.min()) >= 1 - 1e-4


@pytest.mark.parametrize("norm", NORMS)
def test_first_eps_is_the_linear_distance_to_the_boundary(linear_oracle, norm: str) -> None:
    # Line 7 at δ₀ = 0 on a linear model: ε₁ = L / ‖∇L‖q is exactly the minimal ℓp distance (q the dual norm).
    o = linear_oracle
    seen: dict[int, torch.Tensor] = {}
    fmn(o.model, o.inputs, o.labels, norm=norm, steps=2, callback=lambda step, state: seen.setdefault(
        step, state["eps"].clone()))
    torch.testing.assert_close(seen[0], getattr(o, norm), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("norm", NORMS)
def test_zero_gradient_keeps_eps_finite(linear_oracle, norm: str) -> None:
    # Behind an input rounding the gradient is 0 everywhere: line 7's L / ‖∇L‖q must stay a finite ε (with
    # logit margins of a trained model's size it was inf, and the projection refused it), and every returned
    # point is the input or an adversarial.
    o = linear_oracle
    scaled = copy.deepcopy(o.model)
    with torch.no_grad():
        scaled[1].weight.mul_(1e4)
    model = torch.nn.Sequential(Quantize(0.25), scaled).eval()
    seen: list[torch.Tensor] = []
    adv = fmn(model, o.inputs, o.labels, norm=norm, steps=20, generator=torch.Generator().manual_seed(0),
              callback=lambda step, state: seen.append(state["eps"].clone()))
    assert all(bool(torch.isfinite(eps).all()) for eps in seen)
    unchanged = (adv == o.inputs).flatten(1).all(1)
    assert bool((unchanged | (model(adv).argmax(1) != o.labels)).all())


def test_gamma_and_step_size_are_cosine_annealed(linear_oracle) -> None:
    o = linear_oracle
    seen: list[tuple[float, float]] = []
    fmn(o.model, o.inputs, o.labels, steps=4, step_size=2.0, gamma=0.1, final_gamma=0.01,
        callback=lambda step, state: seen.append((float(state["step_size"][0]), float(state["gamma"][0]))))
    assert seen[0] == pytest.approx((2.0, 0.1))
    assert seen[2] == pytest.approx(((2.0 + 0.02) / 2, (0.1 + 0.01) / 2))
    seen.clear()  # a final step size given: α_K = 0.5, half-way (2 + 0.5) / 2
    fmn(o.model, o.inputs, o.labels, steps=4, step_size=2.0, final_step_size=0.5,
        callback=lambda step, state: seen.append((float(state["step_size"][0]), float(state["gamma"][0]))))
    assert seen[2][0] == pytest.approx((2.0 + 0.5) / 2)


@pytest.fixture(scope="module")
def smallcnn():
    return load_model("smallcnn-fmnist")


@pytest.mark.parametrize("norm", NORMS)
def test_counts_equal_steps_and_returned_points_are_adversarial(smallcnn, norm: str) -> None:
    from edgewise.data import sample

    inputs, labels = sample()
    inputs, labels = inputs[:16], labels[:16]
    counting = CountingModel(smallcnn)
    adv = fmn(counting, inputs, labels, norm=norm, steps=30)
    assert counting.forwards == 30 * 16 and counting.backwards == 30 * 16
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    changed = (adv != inputs).flatten(1).any(1)
    assert int(changed.sum()) >= 14
    assert bool((smallcnn(adv[changed]).argmax(1) != labels[changed]).all())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"norm": "l3"}, ValueError, r"norm must be one of \['l1', 'l2', 'linf'\], got 'l3'"),
        ({"steps": 0}, ValueError, "steps must be > 0"),
        ({"steps": 2.5}, TypeError, "steps must be an int"),
        ({"step_size": -1.0}, ValueError, "step_size must be > 0"),
        ({"final_step_size": 0}, ValueError, "final_step_size must be > 0"),
        ({"gamma": 1.0}, ValueError, r"gamma must be in \(0, 1\)"),
        ({"final_gamma": "x"}, TypeError, "final_gamma must be a number"),
        ({"epsilon": 3}, TypeError, "epsilon"),
        ({"generator": 3}, TypeError, "generator must be"),
        ({"callback": 3}, TypeError, "callback must be callable"),
        ({"starting_points": torch.zeros(8, 64)}, ValueError, r"starting_points must have the shape of inputs"),
        ({"starting_points": torch.full((8, 1, 8, 8), 2.0)}, ValueError, r"starting_points must be finite and in"),
        ({"starting_points": torch.zeros(8, 1, 8, 8, dtype=torch.float64)}, ValueError, "dtype and device"),
        ({"starting_points": [0.5]}, TypeError, "starting_points must be a floating-point tensor"),
    ],
)
def test_bad_options(linear_oracle, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        fmn(linear_oracle.model, linear_oracle.inputs, linear_oracle.labels, **kwargs)


def test_bad_inputs(linear_oracle) -> None:
    o = linear_oracle
    with pytest.raises(ValueError, match=r"inputs must be in \[0, 1\], got min .* max 2"):
        fmn(o.model, o.inputs * 0 + 2, o.labels)
    with pytest.raises(ValueError, match="labels must have shape"):
        fmn(o.model, o.inputs, o.labels[:3])
    with pytest.raises(ValueError, match=r"labels must be in \[0, 1\] for a model with 2 classes, got max 6"):
        fmn(o.model, o.inputs, o.labels + 5, steps=2)


def test_every_tensor_follows_the_inputs_device(linear_oracle) -> None:
    # With "meta" as the default device, a tensor made without device= meets the CPU inputs and fails, as it
    # would on a GPU: this runs the device check on a CPU-only machine.
    o = linear_oracle
    expected = fmn(o.model, o.inputs, o.labels, steps=3)
    with torch.device("meta"):
        found = fmn(o.model, o.inputs, o.labels, steps=3)
    assert found.device == o.inputs.device and torch.equal(found, expected)
