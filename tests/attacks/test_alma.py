import pytest
import torch

from edgewise.attacks import alma
from edgewise.attacks.alma import default_alpha, initial_step_size
from edgewise.distances import get as get_distance
from edgewise.models import CountingModel

# Appendix F's rule for ε: about a tenth of the expected distances. The oracle's optima are ~0.01-0.03 (ℓ2) and
# ~0.03-0.1 (ℓ1), so the MNIST-scale defaults (0.1 and 0.5) are replaced by values on the oracle's scale.
ORACLE_INIT = {"l2": 0.002, "l1": 0.01}


@pytest.mark.parametrize("distance", ["l2", "l1"])
@pytest.mark.parametrize("targeted", [False, True])
def test_oracle_within_2_percent_after_1000_steps(oracle_factory, distance: str, targeted: bool) -> None:
    o = oracle_factory(classes=4)
    labels = 1 - o.labels if targeted else o.labels
    adv = alma(o.model, o.inputs, labels, distance=distance, steps=1000, targeted=targeted,
               init_distance=ORACLE_INIT[distance])
    predicted = o.model(adv).argmax(1)
    assert bool((predicted == labels).all() if targeted else (predicted != labels).all())
    optimum = o.l2 if distance == "l2" else o.l1
    ratio = (adv - o.inputs).flatten(1).norm(p=2 if distance == "l2" else 1, dim=1) / optimum
    assert float(ratio.min()) >= 1 - 1e-3 and float(ratio.max()) <= 1.02


@pytest.mark.parametrize("distance", ["l2", "l1"])
def test_box_active_oracle_within_2_percent_after_1000_steps(box_oracle, distance: str) -> None:
    o = box_oracle  # optima ~0.05 (ℓ2) and ~0.3 (ℓ1): ε a tenth of them
    adv = alma(o.model, o.inputs, o.labels, distance=distance, steps=1000,
               init_distance={"l2": 0.005, "l1": 0.03}[distance])
    assert bool((o.model(adv).argmax(1) != o.labels).all())
    optimum = o.l2 if distance == "l2" else o.l1
    ratio = (adv - o.inputs).flatten(1).norm(p=2 if distance == "l2" else 1, dim=1) / optimum
    assert float(ratio.min()) >= 1 - 1e-3 and float(ratio.max()) <= 1.02


def test_budget_is_steps(oracle_factory) -> None:
    o = oracle_factory(classes=3)
    counting = CountingModel(o.model)
    alma(counting, o.inputs, o.labels, steps=30, init_distance=0.002)
    assert counting.forwards == 30 * 8 and counting.backwards == 30 * 8


def test_initial_step_size_hits_the_requested_distance() -> None:
    inputs = torch.rand(5, 1, 6, 6, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    grad = torch.randn(5, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    distance = get_distance("l2")(inputs)
    eta = initial_step_size(distance, inputs, grad, 0.1)
    reached = distance((inputs - eta.view(-1, 1, 1, 1) * grad).clamp(0, 1))
    torch.testing.assert_close(reached, torch.full_like(reached, 0.1), atol=1e-5, rtol=0)


def test_callback_reports_the_multipliers(oracle_factory) -> None:
    o = oracle_factory(classes=3)
    seen: list[dict[str, torch.Tensor]] = []
    alma(o.model, o.inputs, o.labels, steps=40, init_distance=0.002, callback=lambda step, state: seen.append(state))
    assert len(seen) == 40
    assert {"mu", "rho", "lr", "constraint", "distance", "best_distance"} <= set(seen[0])
    assert all(bool(((s["mu"] >= 1e-6) & (s["mu"] <= 1e12)).all()) for s in seen)
    assert bool((seen[-1]["best_distance"] < float("inf")).all())


def test_user_distance_factory(oracle_factory) -> None:
    o = oracle_factory(classes=3)

    def weighted_l2(reference: torch.Tensor):
        return lambda perturbed: (perturbed - reference).flatten(1).square().sum(1)

    adv = alma(o.model, o.inputs, o.labels, distance=weighted_l2, steps=300, init_distance=1e-5)
    assert bool((o.model(adv).argmax(1) != o.labels).all())


def test_default_alpha_follows_the_paper() -> None:
    assert default_alpha(100) == 0.5 and default_alpha(1000) == 0.9 and default_alpha(5000) == 0.9


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"penalty": "p7"}, ValueError, "^penalty must be one of"),
        ({"alpha": 1.0}, ValueError, r"^alpha must be in \[0, 1\)"),
        ({"distance": "nope"}, ValueError, "^init_distance must be given"),
        ({"distance": "nope", "init_distance": 0.1}, ValueError, "^distance must be one of"),
        ({"rho_growth": 1.0}, ValueError, "^rho_growth must be > 1"),
        ({"steps": -1}, ValueError, "^steps must be > 0"),
        ({"mu_max": -1.0}, ValueError, "^mu_max must be > 0"),
    ],
)
def test_bad_options(oracle_factory, kwargs, error, match) -> None:
    o = oracle_factory(classes=3)
    with pytest.raises(error, match=match):
        alma(o.model, o.inputs, o.labels, **kwargs)


def test_alpha_zero_is_allowed(oracle_factory) -> None:
    # α ∈ [0, 1): α = 0 takes μ̂ as it is, no average.
    o = oracle_factory(classes=3)
    assert alma(o.model, o.inputs, o.labels, steps=3, alpha=0.0).shape == o.inputs.shape


def test_two_class_model_is_a_clear_error(linear_oracle) -> None:
    with pytest.raises(ValueError, match="at least 3 classes, got 2"):
        alma(linear_oracle.model, linear_oracle.inputs, linear_oracle.labels, steps=5)


def test_initial_step_size_beyond_the_first_doublings() -> None:
    # ‖g‖₂ = 0.01 and ε = 0.1: the root is η = 10, found only by doubling the bracket [0, 1] four times.
    inputs = torch.full((2, 1, 2, 2), 0.5)
    grad = torch.full((2, 1, 2, 2), 0.005)
    distance = get_distance("l2")(inputs)
    eta = initial_step_size(distance, inputs, grad, 0.1)
    torch.testing.assert_close(eta, torch.full((2,), 10.0), rtol=1e-4, atol=0)


def test_initial_step_size_defaults_to_20_halvings() -> None:
    # The documented default (a bracket of 2^-20 of the line search's): the default equals searches=20 exactly.
    inputs = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(2)) * 0.5 + 0.25
    grad = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    distance = get_distance("l2")(inputs)
    default = initial_step_size(distance, inputs, grad, 0.1)
    assert torch.equal(default, initial_step_size(distance, inputs, grad, 0.1, searches=20))
    assert not torch.equal(default, initial_step_size(distance, inputs, grad, 0.1, searches=21))


def test_initial_step_size_where_the_box_clips_the_step_at_its_upper_face() -> None:
    # x = 0.9 everywhere; g = -1 on two pixels (x − ηg = 0.9 + η, clipped at 1 from η = 0.1) and +1 on two
    # (0.9 − η, clipped at 0 from η = 0.9): for η in [0.1, 0.9], D² = 2·0.1² + 2η², so D = ε = 0.5 at
    # η = √((0.25 − 0.02) / 2). Without the clip at 1 the root would be ε / √4 = 0.25.
    inputs = torch.full((2, 1, 2, 2), 0.9)
    grad = torch.tensor([-1.0, -1.0, 1.0, 1.0]).view(1, 1, 2, 2).expand(2, 1, 2, 2).contiguous()
    distance = get_distance("l2")(inputs)
    eta = initial_step_size(distance, inputs, grad, 0.5)
    torch.testing.assert_close(eta, torch.full((2,), (0.23 / 2) ** 0.5), rtol=1e-5, atol=0)
