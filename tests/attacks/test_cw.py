import pytest
import torch
from torch import nn

from edgewise.attacks import cw
from edgewise.attacks.cw import next_const
from edgewise.distances import get as get_distance
from edgewise.models import CountingModel

# The oracle's optima are ~0.01-0.03 in ℓ2 over 64 pixels: C&W's default Adam step (0.01 per pixel) is on the
# scale of the optimum itself, so the oracle tests use a step of 1e-3.
ORACLE_STEP = 1e-3


@pytest.mark.parametrize("targeted", [False, True])
def test_oracle_l2_within_5_percent(oracle_factory, targeted: bool) -> None:
    o = oracle_factory(classes=4)
    labels = 1 - o.labels if targeted else o.labels
    adv = cw(o.model, o.inputs, labels, distance="l2", steps=100, step_size=ORACLE_STEP, targeted=targeted)
    predicted = o.model(adv).argmax(1)
    assert bool((predicted == labels).all() if targeted else (predicted != labels).all())
    ratio = (adv - o.inputs).flatten(1).norm(dim=1) / o.l2
    assert float(ratio.min()) >= 1 - 1e-3 and float(ratio.max()) <= 1.05


def test_confidence_pushes_past_the_boundary(oracle_factory) -> None:
    o = oracle_factory(classes=3)
    kappa = 0.01
    adv = cw(o.model, o.inputs, o.labels, steps=100, step_size=ORACLE_STEP, confidence=kappa)
    logits = o.model(adv)
    margin = logits.gather(1, o.labels.unsqueeze(1)).squeeze(1) - logits[:, :2].gather(
        1, (1 - o.labels).unsqueeze(1)).squeeze(1)
    # With ‖w‖ = 1 the closest point of margin −κ is κ farther than the boundary.
    assert bool((margin <= -kappa).all())
    assert bool(((adv - o.inputs).flatten(1).norm(dim=1) >= o.l2 + kappa - 1e-4).all())


def test_budget_is_search_steps_times_steps(oracle_factory) -> None:
    o = oracle_factory(classes=3)
    counting = CountingModel(o.model)
    cw(counting, o.inputs, o.labels, steps=7, binary_search_steps=3)
    assert counting.forwards == 3 * 7 * 8 and counting.backwards == 3 * 7 * 8


def test_search_multiplies_by_10_then_bisects() -> None:
    const, lower, upper = torch.tensor([0.01]), torch.zeros(1), torch.full((1,), float("inf"))
    seen = []
    for success in (False, False, True, False, True):
        const, lower, upper = next_const(const, lower, upper, torch.tensor([success]))
        seen.append(float(const))
    # 0.01 fails -> 0.1 fails -> 1 succeeds: bracket [0.1, 1] -> 0.55 fails: [0.55, 1] -> 0.775 succeeds.
    assert seen == pytest.approx([0.1, 1.0, 0.55, 0.775, 0.6625])


def test_callback_sees_every_iteration_and_the_search(oracle_factory) -> None:
    o = oracle_factory(classes=3)
    seen: list[tuple[int, dict[str, torch.Tensor]]] = []
    cw(o.model, o.inputs, o.labels, steps=4, binary_search_steps=3, initial_const=0.5,
       callback=lambda step, state: seen.append((step, state)))
    assert [step for step, _ in seen] == list(range(12))
    assert {"const", "lr", "margin", "distance", "best_distance"} <= set(seen[0][1])
    assert bool((seen[0][1]["const"] == 0.5).all())
    assert {round(float(c), 4) for c in seen[4][1]["const"]} <= {5.0, 0.25}


def test_unfoolable_samples_come_back_unchanged() -> None:
    layer = nn.Linear(16, 3)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.tensor([10.0, 0.0, 0.0]))
    model = nn.Sequential(nn.Flatten(), layer).eval()
    inputs = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    adv = cw(model, inputs, torch.zeros(4, dtype=torch.long), steps=5, binary_search_steps=2)
    assert torch.equal(adv, inputs)


def test_any_registry_distance_and_user_factory(oracle_factory) -> None:
    o = oracle_factory(classes=3, shape=(3, 8, 8))
    for distance in ("ciede2000", lambda reference: lambda perturbed: (perturbed - reference).abs().sum((1, 2, 3))):
        adv = cw(o.model, o.inputs, o.labels, distance=distance, steps=50, step_size=ORACLE_STEP)
        assert bool((o.model(adv).argmax(1) != o.labels).all())
    ciede = get_distance("ciede2000")(o.inputs)(adv)
    assert bool(torch.isfinite(ciede).all())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"steps": 0}, ValueError, "^steps must be > 0"),
        ({"binary_search_steps": 1.5}, TypeError, "^binary_search_steps must be an int"),
        ({"initial_const": -1.0}, ValueError, "^initial_const must be > 0"),
        ({"confidence": -0.5}, ValueError, "^confidence must be >= 0"),
        ({"step_size": 2.0}, ValueError, r"^step_size must be in \(0, 1\)"),
        ({"distance": "nope"}, ValueError, "^distance must be one of"),
        ({"distance": 3}, TypeError, "^distance must be a registry name or a factory"),
        ({"callback": 1}, TypeError, "^callback must be callable"),
    ],
)
def test_bad_arguments(linear_oracle, kwargs, error, match) -> None:
    o = linear_oracle
    with pytest.raises(error, match=match):
        cw(o.model, o.inputs, o.labels, **{"steps": 2, **kwargs})


def test_bad_inputs_name_the_argument(linear_oracle) -> None:
    o = linear_oracle
    with pytest.raises(ValueError, match=r"inputs must be in \[0, 1\]"):
        cw(o.model, o.inputs + 2, o.labels, steps=2)
    with pytest.raises(ValueError, match="labels must be in"):
        cw(o.model, o.inputs, o.labels + 5, steps=2)
