"""APGDA core: the ascent converges to its closed-form maximizer, weights stay on the simplex, the descent reaches
the known minimal perturbations of a linear model, and the averaged strategy keeps w = 1/K."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from edgewise.attacks.minmax import apgda, ensemble_attack
from edgewise.attacks.minmax.apgda import attack_loss, check_minmax_options
from edgewise.projections import project, simplex


def _linear_model(seed: int) -> nn.Module:
    """A second binary linear classifier on the oracle's (1, 8, 8) inputs."""
    generator = torch.Generator().manual_seed(seed)
    layer = nn.Linear(64, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(2, 64, generator=generator) / 8)
        layer.bias.zero_()
    return nn.Sequential(nn.Flatten(), layer).eval()


def _constant_domain(value: float):  # type: ignore[no-untyped-def]
    """fᵢ(δ) = value (+ 0·δ to stay in the graph), never fooled."""

    def domain(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss = torch.full(delta.shape[:1], value, dtype=delta.dtype) + 0 * delta.flatten(1).sum(1)
        return loss, torch.zeros(delta.shape[0], dtype=torch.bool)

    return domain


@pytest.mark.parametrize("gamma", [2.0, 5.0, 20.0])
def test_ascent_converges_to_the_regularized_maximizer(gamma: float) -> None:
    # With f fixed, max_w Σ wᵢ fᵢ − γ/2 ‖w − 1/K‖² over the simplex is proj_P(1/K + f/γ) (complete the square).
    # A sign error in ∇w F or a missing bracket around (w − 1/K) converges elsewhere.
    values = [1.0, 2.0, 4.0]
    delta = torch.zeros(2, 3, dtype=torch.float64)
    result = apgda([_constant_domain(v) for v in values], delta, constraint=lambda d: d, compose=lambda d: d,
                   norm="l2", eps=1.0, steps=400, weight_step=0.05, gamma=gamma)
    expected = simplex(torch.tensor(values, dtype=torch.float64) / gamma + 1 / 3)
    torch.testing.assert_close(result.weights, expected.expand(2, 3), atol=1e-6, rtol=0)


def test_weights_stay_on_the_simplex_and_average_keeps_them_uniform(linear_oracle: Any) -> None:
    oracle = linear_oracle
    other = _linear_model(3)
    for strategy in ("minmax", "average"):
        result = ensemble_attack([oracle.model, other], oracle.inputs, oracle.labels, norm="l2", eps=0.05, steps=10,
                                 strategy=strategy)
        assert result.history.shape == (11, 8, 2) and result.weights.shape == (8, 2)
        assert bool((result.history >= 0).all())
        torch.testing.assert_close(result.history.sum(-1), torch.ones(11, 8))
        torch.testing.assert_close(result.history[0], torch.full((8, 2), 0.5))
        if strategy == "average":
            torch.testing.assert_close(result.history, torch.full((11, 8, 2), 0.5))
        else:
            assert float((result.weights - 0.5).abs().max()) > 1e-3


@pytest.mark.parametrize("norm", ["l1", "l2", "linf"])
def test_descent_reaches_the_minimal_perturbation_of_a_linear_model(linear_oracle: Any, norm: str) -> None:
    # The oracle's minimal ℓp perturbation is interior: just above it every sample is fooled, below none can be.
    oracle = linear_oracle
    minimal = getattr(oracle, norm)
    for i in range(8):
        x, y = oracle.inputs[i : i + 1], oracle.labels[i : i + 1]
        above = ensemble_attack([oracle.model], x, y, norm=norm, eps=float(minimal[i]) * 1.1, steps=50)
        below = ensemble_attack([oracle.model], x, y, norm=norm, eps=float(minimal[i]) * 0.9, steps=50)
        assert bool(above.fooled.all()), (norm, i)
        assert not bool(below.fooled.any()), (norm, i)
        assert bool((oracle.model(above.adv).argmax(1) != y).all())


def test_l0_single_coordinate_suffices_on_the_linear_model(linear_oracle: Any) -> None:
    oracle = linear_oracle
    result = ensemble_attack([oracle.model], oracle.inputs, oracle.labels, norm="l0", eps=1, steps=20)
    assert bool(result.fooled.all())
    assert int(((result.adv - oracle.inputs).flatten(1) != 0).sum(1).max()) <= 1


@pytest.mark.parametrize("norm,eps", [("l0", 5), ("l1", 1.0), ("l2", 0.3), ("linf", 0.03)])
def test_adversarials_are_feasible(linear_oracle: Any, norm: str, eps: float) -> None:
    oracle = linear_oracle
    result = ensemble_attack([oracle.model, _linear_model(5)], oracle.inputs, oracle.labels,
                             norm=norm, eps=eps, steps=10)
    delta = result.adv - oracle.inputs
    torch.testing.assert_close(project(delta, oracle.inputs, norm=norm, eps=eps), delta, atol=1e-6, rtol=0)
    assert float(result.adv.min()) >= 0 and float(result.adv.max()) <= 1


def test_callback_sees_every_step(linear_oracle: Any) -> None:
    oracle = linear_oracle
    seen: list[int] = []
    ensemble_attack([oracle.model], oracle.inputs, oracle.labels, norm="linf", eps=0.01, steps=5,
                    callback=lambda step, state: seen.append(step))
    assert seen == list(range(6))


def test_attack_loss_closed_forms() -> None:
    # z = (0, ln 3), class 0: CE = log 4; low = adversarial, so −CE untargeted and +CE toward a target.
    logits, labels = torch.tensor([[0.0, float(torch.log(torch.tensor(3.0)))]]), torch.tensor([0])
    four = float(torch.log(torch.tensor(4.0)))
    assert float(attack_loss(logits, labels, loss="ce")) == pytest.approx(-four)
    assert float(attack_loss(logits, labels, loss="ce", targeted=True)) == pytest.approx(four)
    # C&W margin z_y − max_{j≠y} z_j = −100, floored at −κ.
    assert float(attack_loss(torch.tensor([[0.0, 100.0]]), labels, loss="cw", kappa=50.0)) == -50.0
    assert float(attack_loss(torch.tensor([[0.0, 100.0]]), labels)) == -50.0  # κ = 50 by default (D.2)


@pytest.mark.parametrize(("options", "match"), [
    ({"loss": "hinge"}, r"^loss must be one of \['ce', 'cw'\], got 'hinge'"),
    ({"loss": "ce", "kappa": 5.0}, "^kappa applies only to loss='cw'"),
])
def test_attack_loss_refuses_what_it_would_ignore(options: dict[str, Any], match: str) -> None:
    # Before: any loss other than "cw" was cross-entropy, and kappa with "ce" was dropped without a word.
    with pytest.raises(ValueError, match=match):
        attack_loss(torch.zeros(1, 2), torch.tensor([0]), **options)


@pytest.mark.parametrize(("options", "match"), [
    ({"norm": "l3"}, "^norm must be one of"),
    ({"step_size": -1.0}, "^step_size must be > 0"),
    ({"weight_step": -1.0}, "^weight_step must be > 0"),
    ({"gamma": -1.0}, "^gamma must be >= 0"),
])
def test_minmax_options_are_named_in_their_errors(options: dict[str, Any], match: str) -> None:
    valid = {"norm": "linf", "eps": 0.1, "steps": 5, "strategy": "minmax", "loss": "cw", "kappa": 50.0,
             "step_size": None, "weight_step": None, "gamma": 0.0}
    with pytest.raises(ValueError, match=match):
        check_minmax_options(**(valid | options))
    check_minmax_options(**valid)


@pytest.mark.parametrize(("norm", "expected"), [("l2", [-0.36, -0.48]), ("l0", [-0.18, -0.24])])
def test_one_descent_step_has_the_given_length(norm: str, expected: list[float]) -> None:
    # f(δ) = w·δ, never fooled: one ℓ2 step from 0 is −α ε w/‖w‖₂ (α = 0.3 given, ε = 2), and it lowers f. ℓ0's
    # ε counts values, so its step is α alone along w/‖w‖₂ (docs/minmax.md): −0.3 (3, 4)/5 for any ε.
    w = torch.tensor([3.0, 4.0], dtype=torch.float64)

    def linear(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return delta @ w, torch.zeros(delta.shape[0], dtype=torch.bool)

    result = apgda([linear], torch.zeros(1, 2, dtype=torch.float64), constraint=lambda d: d, compose=lambda d: d,
                   norm=norm, eps=2.0, steps=1, step_size=0.3)
    torch.testing.assert_close(result.adv, torch.tensor([expected], dtype=torch.float64))


@pytest.mark.parametrize("eps", [0.5, 2.5])
def test_fractional_l0_budget_is_refused(eps: float) -> None:
    # The l0 projection keeps floor(eps) values: a fractional budget would be reported but never spent.
    with pytest.raises(ValueError, match=f"eps must be a whole number with norm 'l0'.*got {eps}"):
        check_minmax_options(norm="l0", eps=eps, steps=1, strategy="minmax", loss="cw", kappa=50.0,
                             step_size=None, weight_step=None, gamma=None)
