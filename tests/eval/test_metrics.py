import math
import os

import pytest
import torch

from edgewise.eval import metrics

from ..conftest import require  # type: ignore[import-not-found]


@pytest.fixture(scope="module")
def attackbench_metrics():
    """attackbenchlib 2.0.2's own metric functions (an independent implementation of AttackBench's LO and GO).

    Skipped when it is not installed, unless EDGEWISE_REQUIRE_BASELINES is set (`make test` sets it and installs
    it): then its absence is a failure. It imports wandb at import time; W&B stays disabled (no login, no network).
    """
    os.environ.setdefault("WANDB_MODE", "disabled")
    require("attackbench", "pip install --no-deps attackbenchlib==2.0.2")
    from attackbench.metrics import distances, global_optimality, optimality

    return distances, optimality, global_optimality


def attack_distances(generator: torch.Generator, n: int, *, clean_errors: torch.Tensor) -> torch.Tensor:
    """Per-sample distances as a benchmark records them: 0 on clean errors, inf on failures, ties included."""
    values = torch.rand(n, generator=generator, dtype=torch.float64) * 3
    values = torch.where(torch.rand(n, generator=generator) < 0.1, values.round(decimals=1), values)
    values[torch.rand(n, generator=generator) < 0.08] = float("inf")
    values[clean_errors] = 0
    return values


def test_aurec_of_a_step_curve_is_its_rectangles() -> None:
    # ρ = 3/4 on [0, 1) (one sample broken at 0), 2/4 on [1, 2): area 0.75 + 0.5; the failure stays in n.
    assert metrics.aurec(torch.tensor([0.0, 1.0, 2.0, float("inf")]), 2.0) == pytest.approx(1.25)
    # A distance beyond ε₀ does not lower the curve inside the window.
    assert metrics.aurec(torch.tensor([1.0, 5.0]), 2.0) == pytest.approx(1.0 + 0.5)


def test_local_optimality_closed_form() -> None:
    reference = torch.tensor([1.0, 2.0])
    # The reference itself scores 1; an attack at twice the distances: ε₀ = 2, acc·ε₀ = 2, AUREC_ref = 1 + 0.5,
    # AUREC_attack = 2 (never below 1 on [0, 2) except the sample at 2 at the very end): (2 − 2) / (2 − 1.5) = 0.
    assert metrics.local_optimality(reference, reference, clean_accuracy=1.0) == pytest.approx(1.0)
    assert metrics.local_optimality(2 * reference, reference, clean_accuracy=1.0) == pytest.approx(0.0)
    # Half-way: [1.5, 2] has AUREC 1.5 + 0.25 = 1.75 → (2 − 1.75) / 0.5 = 0.5.
    half = torch.tensor([1.5, 2.0])
    assert metrics.local_optimality(half, reference, clean_accuracy=1.0) == pytest.approx(0.5)
    assert math.isnan(metrics.local_optimality(reference, torch.full((2,), float("inf")), clean_accuracy=1.0))
    with pytest.raises(ValueError, match="same shape"):
        metrics.local_optimality(reference, reference[:1], clean_accuracy=1.0)
    with pytest.raises(ValueError, match="local"):
        metrics.global_optimality([])


@pytest.mark.filterwarnings("ignore:The reference lower envelope leaves")
@pytest.mark.parametrize("seed", range(4))
def test_local_and_global_optimality_equal_attackbenchlib(attackbench_metrics, seed: int) -> None:
    ab_distances, ab_optimality, ab_global = attackbench_metrics
    generator = torch.Generator().manual_seed(seed)
    n, models, attacks = 300, 3, 4
    per_model: dict[str, dict[str, dict]] = {}
    ours: dict[str, list[float]] = {}
    for m in range(models):
        clean_errors = torch.rand(n, generator=generator) < 0.15
        found = [attack_distances(generator, n, clean_errors=clean_errors) for _ in range(attacks)]
        if m == 0:  # an attack that is worse by a constant factor, one that fails everywhere it can
            found[1] = found[0] * 1.3
            found[2] = torch.where(clean_errors, 0.0, float("inf"))
        reference = metrics.reference_distances(found)
        accuracy = float((~clean_errors).double().mean())
        for a, values in enumerate(found):
            result = {"distances": {"l2": values.tolist()}, "correct": (~clean_errors).tolist(),
                      "ori_success": clean_errors.tolist()}
            per_model.setdefault(f"attack{a}", {})[f"model{m}"] = result
            lo = metrics.local_optimality(values, reference, clean_accuracy=accuracy)
            ours.setdefault(f"attack{a}", []).append(lo)
            theirs = ab_distances.eval_optimality(values.numpy(), reference.numpy(), accuracy)
            assert lo == pytest.approx(theirs, abs=1e-12)
        table = ab_optimality.compare_attacks_optimality(
            [per_model[f"attack{a}"][f"model{m}"] for a in range(attacks)], threat_model="l2",
            attack_names=[f"attack{a}" for a in range(attacks)])
        for a in range(attacks):
            assert ours[f"attack{a}"][m] == pytest.approx(table["optimality_scores"][f"attack{a}"], abs=1e-12)
    # The scores are not all trivially 1: the attack that fails everywhere scores 0, the 1.3× worse one in between.
    assert ours["attack2"][0] == pytest.approx(0, abs=1e-12) and 0 < ours["attack1"][0] < 1
    board = ab_global.create_attack_leaderboard(per_model, threat_model="l2")
    for name, values in ours.items():
        assert metrics.global_optimality(values) == pytest.approx(
            board["attack_details"][name]["global_optimality"], abs=1e-12)
