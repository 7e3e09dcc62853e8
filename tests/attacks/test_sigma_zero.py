"""σ-zero: the minimal ℓ0 distance of the linear oracles (one pixel), with and without the box active, the
surrogate of eq. 4, the budget, bad options; its steps against torch's Adam and CosineAnnealingLR in the order of
the authors' code; the returned point against every point it queried."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from edgewise.attacks import sigma_zero
from edgewise.attacks.sigma_zero import (
    adam_direction,
    adapted_threshold,
    cosine_step_size,
    l0_surrogate,
    normalized,
    sparsified,
)
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
    ({"starting_points": torch.zeros(2, 3)}, ValueError, "^starting_points must have the shape of inputs"),
    ({"starting_points": "start"}, TypeError, "^starting_points must be a floating-point tensor"),
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


def _tiny_mlp() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A random ReLU network in float64 (its gradient changes along the path, unlike the oracles') and inputs it
    classifies as they are."""
    generator = torch.Generator().manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 3)).double().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    inputs = torch.rand(6, 1, 8, 8, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        labels = model(inputs).argmax(1)
    return model, inputs, labels


def _authors_loop(model, inputs, labels, steps: int,
                  start: torch.Tensor | None = None) -> list[dict[str, torch.Tensor]]:
    """Algorithm 1 in the order of the authors' code, written with torch's own Adam and CosineAnnealingLR: per step
    the ℓ0 and adversarial flag of the point evaluated, and the τ left for the next step. ``start``: x + δ₀."""
    delta = (torch.zeros_like(inputs) if start is None else start - inputs).requires_grad_(True)
    optimizer = torch.optim.Adam([delta], lr=1.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=0.1)
    tau = torch.full((len(inputs),), 0.3, dtype=inputs.dtype)
    trace = []
    for _ in range(steps):
        optimizer.zero_grad()
        logits = model(inputs + delta)
        own = logits.gather(1, labels[:, None])[:, 0]
        other = logits.scatter(1, labels[:, None], -math.inf).amax(1)
        square = delta.square()
        ((own - other).clamp(min=0) + (square / (square + 1e-3)).flatten(1).mean(1)).sum().backward()
        adversarial = logits.argmax(1) != labels
        trace.append({"l0": (delta.detach() != 0).flatten(1).sum(1).double(), "adversarial": adversarial})
        with torch.no_grad():
            delta.grad /= delta.grad.flatten(1).abs().amax(1).view(-1, 1, 1, 1)
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            delta.copy_((inputs + delta).clamp(0, 1) - inputs)
            change = 0.01 * schedule.get_last_lr()[0]
            tau = (tau + torch.where(adversarial, change, -change)).clamp(0, 1)
            delta[delta.abs() < tau.view(-1, 1, 1, 1)] = 0
        trace[-1]["threshold"] = tau
    return trace


def _assert_same_trajectory(seen: list[dict[str, torch.Tensor]], expected: list[dict[str, torch.Tensor]]) -> None:
    for ours, theirs in zip(seen, expected, strict=True):
        assert torch.equal(ours["adversarial"], theirs["adversarial"])
        torch.testing.assert_close(ours["l0"], theirs["l0"])
        torch.testing.assert_close(ours["threshold"], theirs["threshold"])


def test_steps_in_the_authors_order_with_torchs_adam_and_schedule() -> None:
    # The whole trajectory: Adam on the ℓ∞-normalized gradient, the box, τ moved by the stepped-to rate, the
    # projection. adv-lib's one-step lag of the schedule (η_{i-1} for Adam's step) fails this.
    model, inputs, labels = _tiny_mlp()
    seen: list[dict[str, torch.Tensor]] = []
    sigma_zero(model, inputs, labels, steps=60, callback=lambda step, state: seen.append(state))
    expected = _authors_loop(model, inputs, labels, 60)
    assert any(bool(step["adversarial"].any()) for step in expected)
    assert any(bool((~step["adversarial"]).any()) for step in expected[1:])
    _assert_same_trajectory(seen, expected)


def test_from_starting_points_steps_like_the_authors_loop_from_them() -> None:
    # δ₀ = x₀ − x: an adversarial start for some samples (an earlier run's result), the input for the others.
    model, inputs, labels = _tiny_mlp()
    start = sigma_zero(model, inputs, labels, steps=30)
    start[::2] = inputs[::2]
    assert bool((model(start[1::2]).argmax(1) != labels[1::2]).all())
    seen: list[dict[str, torch.Tensor]] = []
    sigma_zero(model, inputs, labels, steps=40, starting_points=start,
               callback=lambda step, state: seen.append(state))
    expected = _authors_loop(model, inputs, labels, 40, start)
    torch.testing.assert_close(expected[0]["l0"], lp.l0(inputs, start))
    _assert_same_trajectory(seen, expected)


def test_one_step_from_an_adversarial_start_returns_it() -> None:
    # The first query is x₀ itself: never worse than the start where it is adversarial, the input where not.
    model, inputs, labels = _tiny_mlp()
    start = sigma_zero(model, inputs, labels, steps=30)
    fooled = model(start).argmax(1) != labels
    assert bool(fooled.any())
    adv = sigma_zero(model, inputs, labels, steps=1, starting_points=start)
    torch.testing.assert_close(adv, torch.where(fooled.view(-1, 1, 1, 1), start, inputs), rtol=0, atol=0)


def test_returns_the_first_sparsest_adversarial_query() -> None:
    # Best-point bookkeeping seen from outside: among the points the attack queried, the adversarial one with the
    # fewest changed elements (the earliest of those), else the input.
    model, inputs, labels = _tiny_mlp()
    queries: list[torch.Tensor] = []

    def recording(batch: torch.Tensor) -> torch.Tensor:
        queries.append(batch.detach().clone())
        return model(batch)

    adv = sigma_zero(recording, inputs, labels, steps=40)
    stacked = torch.stack(queries)  # (steps, batch, ...)
    with torch.no_grad():
        fooled = torch.stack([model(q).argmax(1) != labels for q in queries])
    sizes = torch.where(fooled, (stacked != inputs).flatten(2).sum(2).double(), math.inf)
    first_best = sizes.argmin(0)
    assert bool(fooled.any(0).all())
    torch.testing.assert_close(adv, stacked[first_best, torch.arange(len(inputs))], rtol=0, atol=0)


def test_cosine_step_size_is_torchs_cosine_annealing() -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.7)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=9, eta_min=0.07)
    rates = [schedule.get_last_lr()[0]]
    for _ in range(9):
        optimizer.step()
        schedule.step()
        rates.append(schedule.get_last_lr()[0])
    assert [cosine_step_size(i, 9, 0.7) for i in range(10)] == pytest.approx(rates, rel=1e-12)


def test_adam_direction_is_torchs_adam() -> None:
    generator = torch.Generator().manual_seed(0)
    gradients = torch.randn(5, 3, 4, generator=generator, dtype=torch.float64)
    parameter = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([parameter], lr=0.3)
    ours = torch.zeros(3, 4, dtype=torch.float64)
    first = second = torch.zeros_like(ours)
    for step, gradient in enumerate(gradients):
        parameter.grad = gradient.clone()
        optimizer.step()
        direction, first, second = adam_direction(gradient, first, second, step)
        ours = ours - 0.3 * direction
        torch.testing.assert_close(ours, parameter.detach(), rtol=1e-12, atol=1e-14)


def test_threshold_moves_by_the_change_and_stays_in_the_unit_interval() -> None:
    tau = torch.tensor([0.5, 0.5, 0.995, 0.004])
    adversarial = torch.tensor([True, False, True, False])
    torch.testing.assert_close(adapted_threshold(tau, adversarial, 0.01), torch.tensor([0.51, 0.49, 1.0, 0.0]))


def test_projection_keeps_elements_at_the_threshold_and_normalization_keeps_zero() -> None:
    delta = torch.tensor([[0.2, -0.3, 0.1], [0.05, -0.05, 0.5]])
    torch.testing.assert_close(sparsified(delta, torch.tensor([0.2, 0.5])),
                               torch.tensor([[0.2, -0.3, 0.0], [0.0, 0.0, 0.5]]))
    gradient = torch.tensor([[0.0, 0.0], [-4.0, 2.0]])
    torch.testing.assert_close(normalized(gradient), torch.tensor([[0.0, 0.0], [-1.0, 0.5]]))


def test_defaults_run_the_papers_1000_steps(linear_oracle) -> None:
    # N = 1000 (sec. 4 of the paper; the authors' and adv-lib's default): one forward and one backward each.
    o = linear_oracle
    counting = CountingModel(o.model)
    sigma_zero(counting, o.inputs[:2], o.labels[:2])
    assert counting.forwards == 1000 * 2 and counting.backwards == 1000 * 2
