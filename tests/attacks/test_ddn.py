import math

import pytest
import torch

from edgewise.attacks import ddn
from edgewise.attacks.ddn import cosine_step_size
from edgewise.models import CountingModel, load_model


def test_oracle_within_2_percent_of_the_closed_form_l2(linear_oracle) -> None:
    o = linear_oracle
    adv = ddn(o.model, o.inputs, o.labels, steps=300, levels=None)
    assert bool((o.model(adv).argmax(1) != o.labels).all())
    ratio = (adv - o.inputs).flatten(1).norm(dim=1) / o.l2
    assert float(ratio.max()) <= 1.02 and float(ratio.min()) >= 1 - 1e-4


def test_targeted_oracle(linear_oracle) -> None:
    o = linear_oracle
    targets = 1 - o.labels
    adv = ddn(o.model, o.inputs, targets, steps=300, levels=None, targeted=True)
    assert bool((o.model(adv).argmax(1) == targets).all())
    assert float(((adv - o.inputs).flatten(1).norm(dim=1) / o.l2).max()) <= 1.02


def test_step_size_schedule_is_the_papers_cosine() -> None:
    assert cosine_step_size(0, 100, 1.0, 0.01) == pytest.approx(1.0)
    assert cosine_step_size(50, 100, 1.0, 0.01) == pytest.approx(0.505)
    assert cosine_step_size(100, 100, 1.0, 0.01) == pytest.approx(0.01)


@pytest.fixture(scope="module")
def smallcnn():
    return load_model("smallcnn-fmnist")


def test_quantized_outputs_are_8_bit_and_counts_equal_steps(smallcnn) -> None:
    from edgewise.data import sample

    inputs, labels = sample()
    inputs, labels = inputs[:16], labels[:16]
    counting = CountingModel(smallcnn)
    adv = ddn(counting, inputs, labels, steps=20)
    assert counting.forwards == 20 * 16 and counting.backwards == 20 * 16
    assert torch.equal(adv, (adv * 255).round() / 255)
    changed = (adv != inputs).flatten(1).any(1)
    assert bool((smallcnn(adv[changed]).argmax(1) != labels[changed]).all())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"steps": 0}, ValueError, "^steps must be > 0"),
        ({"steps": 1.5}, TypeError, "^steps must be an int"),
        ({"gamma": 1.5}, ValueError, r"^gamma must be in \(0, 1\)"),
        ({"levels": 1}, ValueError, "^levels must be an int >= 2"),
        ({"init_norm": 0.0}, ValueError, "^init_norm must be > 0"),
        ({"step_size": -1.0}, ValueError, "^step_size must be > 0"),
        ({"final_step_size": 0.0}, ValueError, "^final_step_size must be > 0"),
        ({"stepz": 3}, TypeError, "stepz"),
        ({"generator": 3}, TypeError, "generator must be"),
    ],
)
def test_bad_options(linear_oracle, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        ddn(linear_oracle.model, linear_oracle.inputs, linear_oracle.labels, **kwargs)


def test_bad_inputs(linear_oracle) -> None:
    o = linear_oracle
    with pytest.raises(ValueError, match=r"inputs must be in \[0, 1\], got min .* max 2"):
        ddn(o.model, o.inputs * 0 + 2, o.labels)
    with pytest.raises(ValueError, match="labels must have shape"):
        ddn(o.model, o.inputs, o.labels[:3])
    with pytest.raises(ValueError, match=r"labels must be in \[0, 1\] for a model with 2 classes, got max 6"):
        ddn(o.model, o.inputs, o.labels + 5, steps=2)
    with pytest.raises(TypeError, match=r"labels must have dtype torch\.int64"):
        ddn(o.model, o.inputs, o.labels.float())
    with pytest.raises(ValueError, match="inputs must be finite"):
        ddn(o.model, o.inputs * float("nan"), o.labels)


def test_norm_and_step_size_follow_algorithm_1(linear_oracle) -> None:
    """ε is multiplied by 1 − γ after an adversarial iterate and by 1 + γ otherwise (lines 7-11), capped at the
    largest ℓ2 distance inside the box; α follows the cosine from ``step_size`` to ``final_step_size``; the best
    distance is the smallest distance among the adversarial iterates, and the returned point has it."""
    o = linear_oracle
    steps, gamma, init_norm = 30, 0.1, 0.05
    seen: list[dict[str, torch.Tensor]] = []
    adv = ddn(o.model, o.inputs, o.labels, steps=steps, gamma=gamma, init_norm=init_norm, step_size=0.5,
              final_step_size=0.02, callback=lambda step, state: seen.append({k: v.clone() for k, v in state.items()}))
    assert len(seen) == steps
    worst = torch.maximum(o.inputs, 1 - o.inputs).flatten(1).norm(dim=1)
    norm = torch.full((len(o.inputs),), init_norm)
    best = torch.full_like(norm, math.inf)
    flips = 0
    for step, state in enumerate(seen):
        alpha = 0.02 + (0.5 - 0.02) * (1 + math.cos(math.pi * step / steps)) / 2
        torch.testing.assert_close(state["step_size"], torch.full_like(norm, alpha))
        adversarial = state["adversarial"]
        norm = torch.minimum(torch.where(adversarial, norm * (1 - gamma), norm * (1 + gamma)), worst)
        torch.testing.assert_close(state["norm"], norm)
        assert bool((state["best_distance"] <= best).all())
        assert torch.equal(torch.isfinite(state["best_distance"]), torch.isfinite(best) | adversarial)
        best = state["best_distance"]
        if step:
            flips += int((adversarial != seen[step - 1]["adversarial"]).sum())
    assert flips > len(o.inputs)  # the iterates cross the boundary back and forth: both branches of lines 7-11
    torch.testing.assert_close((adv - o.inputs).flatten(1).norm(dim=1), best)


def test_defaults_are_the_papers_and_a_bad_callback_is_refused(linear_oracle) -> None:
    """100 iterations, α annealed from 1 to 0.01 (sec. 4); the callback is checked at entry like every argument."""
    o = linear_oracle
    seen: list[float] = []
    ddn(o.model, o.inputs, o.labels, callback=lambda step, state: seen.append(float(state["step_size"][0])))
    assert len(seen) == 100
    assert seen[0] == pytest.approx(1.0) and seen[-1] == pytest.approx(cosine_step_size(99, 100, 1.0, 0.01))
    with pytest.raises(TypeError, match="callback must be callable"):
        ddn(o.model, o.inputs, o.labels, callback=3)


def test_every_tensor_follows_the_inputs_device(linear_oracle) -> None:
    # With "meta" as the default device, a tensor made without device= meets the CPU inputs and fails, as it
    # would on a GPU: this runs the device check on a CPU-only machine.
    o = linear_oracle
    expected = ddn(o.model, o.inputs, o.labels, steps=3, generator=torch.Generator().manual_seed(0))
    with torch.device("meta"):
        found = ddn(o.model, o.inputs, o.labels, steps=3, generator=torch.Generator().manual_seed(0))
    assert found.device == o.inputs.device and torch.equal(found, expected)


class _DeadBeyond(torch.nn.Module):
    """Two classes, z = (0, −k·relu(b − x₀)), with the points it is called on recorded: the cross-entropy's
    gradient points along +e₀ while x₀ < b and is exactly 0 beyond (the relu is dead there)."""

    def __init__(self, b: float = 0.55, k: float = 10.0) -> None:
        super().__init__()
        self.b, self.k, self.seen = b, k, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return torch.stack([torch.zeros_like(x[:, 0]), -self.k * torch.relu(self.b - x[:, 0])], dim=1)


def test_fallback_step_is_alpha_times_a_fresh_draw_for_each_sample_of_a_batch() -> None:
    """Where the gradient is exactly 0, DDN steps by α·r with r ~ N(0, I) the generator's next draw, not
    normalized (adv-lib, the authors' code), then projects onto the ε-sphere (line 12). Sample 0 takes one gradient
    step (δ₁ = ε₁e₀) and then meets the dead region, so its second step is δ₂ = ε₂ (ε₁e₀ + α₁r)/‖ε₁e₀ + α₁r‖;
    sample 1 keeps its gradient."""
    gamma, init_norm, steps = 0.05, 0.1, 3
    labels = torch.zeros(2, dtype=torch.long)
    inputs = torch.tensor([[0.5, 0.5], [0.1, 0.5]], dtype=torch.float64)
    model = _DeadBeyond().eval()
    ddn(model, inputs, labels, steps=steps, gamma=gamma, init_norm=init_norm, levels=None,
        generator=torch.Generator().manual_seed(3))
    r = torch.randn(inputs.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    e0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    eps1, eps2 = init_norm * (1 + gamma), init_norm * (1 + gamma) ** 2  # never adversarial: z₁ ≤ 0 = z₀
    torch.testing.assert_close(model.seen[1], inputs + eps1 * e0)
    assert float(model.seen[1][0, 0]) > model.b > float(model.seen[1][1, 0])  # sample 0 only: the gradient is 0
    step = eps1 * e0 + cosine_step_size(1, steps, 1.0, 0.01) * r[0]
    torch.testing.assert_close(model.seen[2][0], inputs[0] + eps2 * step / step.norm())
    torch.testing.assert_close(model.seen[2][1], inputs[1] + eps2 * e0)


class _Flat(torch.nn.Module):
    """Constant logits: the gradient is 0 everywhere (a model behind an input quantization looks like this)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        flat = 0 * x[:, 0]  # depends on x through autograd, with a zero gradient
        return torch.stack([flat + 1, flat], dim=1)


def test_a_vanished_gradient_draws_a_new_direction_at_each_step() -> None:
    """Without a gradient DDN must still explore: each step's random direction is drawn anew (as adv-lib, the
    authors' code, does), so the iterates do not stay on one ray from the input (ε stays small enough here for
    the box never to bend that ray)."""
    inputs = torch.full((3, 8), 0.5, dtype=torch.float64)
    model = _Flat().eval()
    ddn(model, inputs, torch.zeros(3, dtype=torch.long), steps=4, init_norm=0.05, levels=None,
        generator=torch.Generator().manual_seed(0))
    first, later = (model.seen[1] - inputs), (model.seen[3] - inputs)
    cosine = torch.nn.functional.cosine_similarity(first, later, dim=1)
    assert bool((cosine.abs() < 0.999).all())
