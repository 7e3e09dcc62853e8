"""ALMA's multiplier, penalty-parameter and step-size schedules against a trace stepped by hand (Algorithm 2).

The oracle tests converge whatever ρ does, and stop their schedule checks before M = 10 steps; here every
reported μ⁽ⁱ⁾, ρ⁽ⁱ⁾ and η⁽ⁱ⁾ of a 40-step run (four periods of M) is recomputed from the reported constraint
values d⁽ⁱ⁾ and the step at which each sample first became adversarial:

- μ (lines 5-6): μ⁽ⁱ⁺¹⁾ = clip(αμ⁽ⁱ⁾ + (1 − α)P'(d⁽ⁱ⁾, ρ⁽ⁱ⁾, μ⁽ⁱ⁾), μmin, μmax) from the second iteration on (the
  authors' implementation keeps μ⁽¹⁾ = μ⁽⁰⁾, see alma.py);
- ρ (lines 10-14): at (i + 1) mod M = 0, ρ ← γρ for a sample with no adversarial in iterations 0..i whose
  d⁽ⁱ⁾ > τd⁽ⁱ⁻ᴹ⁾ (d⁽⁰⁾ for the first check, where i − M < 0), unchanged otherwise and between checks;
- η (sec. 3.2.3, Fig. 3): η⁽⁰⁾ until the first adversarial at iteration k, then η⁽⁰⁾·r^((i − k)/(N − k)) with
  r = ``final_lr_ratio``.

The two settings make every branch happen: with ε = 1e-4 no sample turns adversarial and ρ grows for some
samples at some checks only; with ε = 5e-4 samples turn adversarial at different iterations and their η decays.
"""

from __future__ import annotations

import pytest
import torch

from edgewise.attacks import alma
from edgewise.penalties import p2_derivative

STEPS, M, GAMMA, TAU, RATIO = 40, 10, 1.2, 0.95, 0.01


def _run(oracle_factory, init_distance: float, alpha: float) -> list[dict[str, torch.Tensor]]:
    o = oracle_factory(classes=4)
    seen: list[dict[str, torch.Tensor]] = []
    alma(o.model, o.inputs, o.labels, steps=STEPS, init_distance=init_distance, alpha=alpha, rho_period=M,
         rho_growth=GAMMA, constraint_improvement=TAU, final_lr_ratio=RATIO,
         callback=lambda step, state: seen.append({k: v.detach().clone().double() for k, v in state.items()}))
    assert len(seen) == STEPS
    return seen


@pytest.mark.parametrize("init_distance", [1e-4, 5e-4])
def test_schedules_follow_algorithm_2(oracle_factory, init_distance: float) -> None:
    alpha = 0.7
    trace = _run(oracle_factory, init_distance, alpha)
    batch = trace[0]["rho"].numel()
    found = torch.stack([torch.isfinite(s["best_distance"]) for s in trace])  # (steps, B): adversarial by step i
    first = torch.where(found.any(0), found.double().argmax(0), torch.full((batch,), -1.0))
    mu, rho = torch.ones(batch, dtype=torch.float64), torch.ones(batch, dtype=torch.float64)
    reference = trace[0]["constraint"]
    lr0 = trace[0]["lr"]
    grew = kept = 0
    for i, state in enumerate(trace):
        d = state["constraint"]
        if i:
            mu = (alpha * mu + (1 - alpha) * p2_derivative(d, rho, mu)).clamp(1e-6, 1e12)
        torch.testing.assert_close(state["mu"], mu, rtol=1e-5, atol=0, msg=f"mu at step {i}")
        if (i + 1) % M == 0:
            stalled = ~found[i] & (d > TAU * reference)
            grew, kept = grew + int(stalled.sum()), kept + int((~stalled).sum())
            rho = torch.where(stalled, GAMMA * rho, rho)
            reference = d
        torch.testing.assert_close(state["rho"], rho, rtol=1e-6, atol=0, msg=f"rho at step {i}")
        decayed = (first >= 0) & (i >= first)
        exponent = (i - first) / (STEPS - first)
        lr = torch.where(decayed, lr0 * RATIO ** exponent.clamp(min=0), lr0)
        torch.testing.assert_close(state["lr"], lr, rtol=1e-5, atol=0, msg=f"lr at step {i}")
    if init_distance == 1e-4:  # ρ grew at some checks and stayed at others, with no adversarial at all
        assert not bool(found.any()) and grew > 0 and kept > 0
    else:  # adversarials found at several different iterations, well before the end: η decays per sample
        assert len(set(first[first > 0].tolist())) >= 3 and float(first[first > 0].min()) < STEPS - M


def test_lr_decays_from_the_first_step_for_an_input_adversarial_at_the_start(oracle_factory) -> None:
    # A misclassified input is adversarial at iteration 0 (k = 0): η = η⁽⁰⁾ r^(i/N) from the start.
    o = oracle_factory(classes=4)
    labels = o.labels.clone()
    labels[0] = 1 - labels[0]
    seen: list[torch.Tensor] = []
    alma(o.model, o.inputs, labels, steps=STEPS, init_distance=5e-4, final_lr_ratio=RATIO,
         callback=lambda step, state: seen.append(state["lr"].detach().clone().double()))
    expected = torch.stack([seen[0][0] * RATIO ** (i / STEPS) for i in range(STEPS)])
    torch.testing.assert_close(torch.stack([lr[0] for lr in seen]), expected, rtol=1e-5, atol=0)


def test_rho_grows_geometrically_and_never_for_an_input_adversarial_at_the_start(oracle_factory) -> None:
    # Lines 10-14: every M steps ρ ← γρ for a sample never adversarial whose constraint did not improve by τ.
    # From ε⁽⁰⁾ = 1e-5 the constraint of the correctly classified samples never improves enough: ρ = γ^k after the
    # k-th check; the misclassified sample 0 is adversarial from iteration 0 and keeps ρ = ρ⁽⁰⁾ = 1.
    o = oracle_factory(classes=4)
    labels = o.labels.clone()
    labels[0] = 1 - labels[0]
    seen: list[torch.Tensor] = []
    alma(o.model, o.inputs, labels, steps=STEPS, init_distance=1e-5, alpha=0.7, rho_period=M, rho_growth=GAMMA,
         constraint_improvement=TAU, final_lr_ratio=RATIO,
         callback=lambda step, state: seen.append(state["rho"].detach().clone().double()))
    for i, rho in enumerate(seen):
        expected = torch.full_like(rho, GAMMA ** ((i + 1) // M))
        expected[0] = 1.0
        torch.testing.assert_close(rho, expected, rtol=1e-6, atol=0, msg=f"rho at step {i}")


def test_rho_stays_for_an_input_adversarial_at_the_start_even_when_its_constraint_worsens(oracle_factory) -> None:
    # Lines 10-14 grow ρ only for samples with no adversarial yet; a misclassified input has one at iteration 0.
    # With the l2 distance its constraint never worsens (the distance pulls the iterate back to the input, the
    # penalty deeper into the adversarial side), so the test above cannot tell "never adversarial" from "not
    # adversarial after iteration 0". Here a user distance, ‖x̃ − (x − 0.2w)‖₂, has its minimum across the
    # boundary: the iterate walks back into the true class and the constraint rises past τ times its reference,
    # so only the adversarial found at iteration 0 keeps ρ at ρ⁽⁰⁾.
    o = oracle_factory(classes=4)
    inputs, labels = o.inputs[:1], 1 - o.labels[:1]  # predicted o.labels[0]: adversarial for the flipped label
    w = o.model[1].weight[1].detach().view_as(inputs[0])
    shift = 0.2 * w if int(labels[0]) == 0 else -0.2 * w  # towards the side of the (flipped) true class

    def across(reference: torch.Tensor):
        return lambda perturbed: (perturbed - (reference - shift)).flatten(1).norm(dim=1)

    seen: list[dict[str, torch.Tensor]] = []
    alma(o.model, inputs, labels, distance=across, steps=STEPS, init_distance=0.3, alpha=0.7, rho_period=M,
         rho_growth=GAMMA, constraint_improvement=TAU,
         callback=lambda step, state: seen.append({k: v.detach().clone().double() for k, v in state.items()}))
    assert bool(torch.isfinite(seen[0]["best_distance"]).all())  # adversarial at iteration 0
    checks = [i for i in range(STEPS) if (i + 1) % M == 0]
    references = [seen[0]["constraint"]] + [seen[i]["constraint"] for i in checks[:-1]]
    worsened = [bool((seen[i]["constraint"] > TAU * ref).all()) for i, ref in zip(checks, references, strict=True)]
    assert worsened[0], "the setting must make the rule's constraint condition hold"
    assert all(float(state["rho"]) == 1.0 for state in seen)
