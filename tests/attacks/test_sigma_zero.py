"""σ-zero: the minimal ℓ0 distance of the linear oracles (one pixel), with and without the box active, the
surrogate of eq. 4, the budget, bad options."""

from __future__ import annotations

import copy

import pytest
import torch

from edgewise.attacks import sigma_zero
from edgewise.attacks.sigma_zero import l0_surrogate
from edgewise.distances import lp
from edgewise.models import CountingModel


def test_surrogate_tends_to_l0_as_sigma_shrinks() -> None:
    delta = torch.tensor([[0.0, 0.5, -0.2, 0.0]])
    torch.testing.assert_close(l0_surrogate(delta, 1e-9), torch.tensor([0.5]))
    torch.testing.assert_close(l0_surrogate(delta, 1e-3), torch.tensor([(0.25 / 0.251 + 0.04 / 0.041) / 4]))


@pytest.mark.parametrize("oracle", ["linear_oracle", "box_oracle"])
def test_oracle_one_pixel(request, oracle: str) -> None:
    # The ℓ1-optimal move of both oracles changes one pixel and stays inside the box: the ℓ0 optimum is 1.
    o = request.getfixturevalue(oracle)
    adv = sigma_zero(o.model, o.inputs, o.labels, steps=300)
    assert bool((o.model(adv).argmax(1) != o.labels).all())
    assert lp.l0(o.inputs, adv).tolist() == [1.0] * len(o.inputs)
    assert adv.min() >= 0 and adv.max() <= 1


def test_targeted(oracle_factory) -> None:
    o = oracle_factory(classes=4)
    targets = 1 - o.labels
    adv = sigma_zero(o.model, o.inputs, targets, steps=200, targeted=True)
    assert torch.equal(o.model(adv).argmax(1), targets)
    assert float(lp.l0(o.inputs, adv).max()) <= 2


def test_budget_and_no_adversarial_returns_the_input(linear_oracle) -> None:
    o = linear_oracle
    counting = CountingModel(o.model)
    adv = sigma_zero(counting, o.inputs, o.labels, steps=3, step_size=1e-6)
    assert counting.forwards == 3 * len(o.inputs) and counting.backwards == 3 * len(o.inputs)
    assert torch.equal(adv, o.inputs)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"norm": "l1"}, ValueError, r"^norm must be one of \['l0'\], got 'l1'"),
    ({"steps": 0}, ValueError, "^steps must be > 0"),
    ({"sigma": -1.0}, ValueError, "^sigma must be > 0"),
    ({"step_size": -1.0}, ValueError, "^step_size must be > 0"),
    ({"threshold": 1.5}, ValueError, r"^threshold must be in \(0, 1\)"),
    ({"threshold_step": "x"}, TypeError, "^threshold_step must be a number"),
    ({"eps": 3}, TypeError, "eps"),
])
def test_bad_options(linear_oracle, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        sigma_zero(linear_oracle.model, linear_oracle.inputs, linear_oracle.labels, **kwargs)


def test_callback_reports_its_documented_keys_in_the_inputs_dtype(linear_oracle) -> None:
    o = linear_oracle
    seen: list[dict[str, torch.Tensor]] = []
    model = copy.deepcopy(o.model).double()
    sigma_zero(model, o.inputs.double(), o.labels, steps=2, callback=lambda step, state: seen.append(state))
    assert len(seen) == 2 and set(seen[0]) == {"l0", "best_l0", "threshold", "step_size", "adversarial"}
    assert seen[0]["threshold"].dtype == torch.float64 and seen[0]["step_size"].dtype == torch.float64


class _Recording(torch.nn.Module):
    """A model that keeps the points it is called on."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.model(x)


def test_first_step_is_adams_bias_corrected_step() -> None:
    """The first iterate, from Algorithm 1 and Adam (Kingma & Ba 2015, Algorithm 1) with bias correction: after
    one step m̂ = g and v̂ = g², so every element with a nonzero gradient moves by η₀ against the gradient of
    L + ℓ̂0/d (eq. 3-4; at δ = 0 the ℓ0 term's gradient is 0, so g ∝ ∇(z_y − max_{j≠y} z_j)). τ stays below η₀."""
    weight = torch.tensor([[0.2, -0.5, 1.0, 0.3, -0.8, 0.6],
                           [-0.4, 0.5, -0.2, 0.9, 0.1, -0.3],
                           [0.05, 0.05, 0.05, 0.05, 0.05, 0.05]], dtype=torch.float64)
    linear = torch.nn.Linear(6, 3, bias=False).double()
    with torch.no_grad():
        linear.weight.copy_(weight)
    inputs, labels = torch.full((1, 6), 0.5, dtype=torch.float64), torch.zeros(1, dtype=torch.long)
    logits = inputs @ weight.T
    runner_up = int(logits[0, 1:].argmax()) + 1
    assert int(logits.argmax()) == 0 and float(logits[0, runner_up]) > float(logits[0, 3 - runner_up])
    assert bool((weight[0] != weight[runner_up]).all())
    model = _Recording(linear)
    step_size = 0.05
    sigma_zero(model, inputs, labels, steps=2, step_size=step_size, threshold=0.01, threshold_step=0.01)
    expected = inputs - step_size * torch.sign(weight[0] - weight[runner_up])
    torch.testing.assert_close(model.seen[1], expected, rtol=0, atol=1e-6)


def test_threshold_stays_in_the_unit_interval() -> None:
    """τ rises by t·η after an adversarial iterate and falls otherwise, clipped to [0, 1] (Algorithm 1): a
    misclassified input (adversarial throughout) holds τ at 1, one no perturbation in the box can flip at 0."""
    linear = torch.nn.Linear(4, 2).double()
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[0.0] * 4, [0.1] * 4], dtype=torch.float64))
        linear.bias.copy_(torch.tensor([0.0, -1.0], dtype=torch.float64))
    inputs = torch.full((2, 4), 0.5, dtype=torch.float64)
    labels = torch.tensor([1, 0])  # z = (0, -0.8): sample 0 is misclassified; z₁ <= -0.6 < 0 in the box
    seen: list[torch.Tensor] = []
    sigma_zero(linear, inputs, labels, steps=30, step_size=1.0, threshold=0.9, threshold_step=0.5,
               callback=lambda step, state: seen.append(state["threshold"].clone()))
    taus = torch.stack(seen)
    assert bool(((taus >= 0) & (taus <= 1)).all())
    assert taus[:, 0].tolist() == [1.0] * 30
    assert float(taus[-1, 1]) == 0.0 and bool((taus[1:, 1] <= taus[:-1, 1]).all())
