import sys

import pytest
import torch

from edgewise.eval import run_attack
from edgewise.eval.baselines import BASELINES, MissingLibraryError, load_baseline
from edgewise.models import load_model

from ..conftest import require  # type: ignore[import-not-found]

SLOW = {"torchattacks:deepfool", "torchattacks:fab-l2", "foolbox:cw-l2", "foolbox:ead", "attackbench:apgd-l1",
        "attackbench:apgd-l2", "attackbench:apgd-linf", "attackbench:fab-l1", "attackbench:fab-linf"}


@pytest.fixture(scope="module")
def setting():
    from edgewise.data import sample

    inputs, labels = sample()
    return load_model("smallcnn-fmnist"), inputs[:4], labels[:4]


def require_adapter(name: str) -> None:
    """The adapter's library, or a skip (a failure under `make test`)."""
    require(BASELINES[name].library, "docs/install.md says how")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in sorted(BASELINES)])
def test_adapter_returns_checked_examples_and_leaves_model_and_rng_alone(name: str, setting) -> None:
    require_adapter(name)
    model, inputs, labels = setting
    state = torch.get_rng_state()
    result = run_attack(model, inputs, labels, load_baseline(name, steps=10), progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    assert not model.training and all(p.requires_grad and p.grad is None for p in model.parameters())
    assert result.adversarial.shape == inputs.shape and result.forwards.min() > 0
    distance = result.distances[BASELINES[name].distance]
    assert bool(torch.isfinite(distance[result.success]).all()) and bool(torch.isinf(distance[~result.success]).all())


def test_torchattacks_cannot_switch_the_model_to_training_mode(setting) -> None:
    # torchattacks' Attack calls model.train() after an attack on a model whose `training` flag is True
    # (the CountingModel of run_attack is such a module): the adapter must shield the user's model from it.
    require_adapter("torchattacks:cw-l2")
    model, inputs, labels = setting
    run_attack(model, inputs, labels, load_baseline("torchattacks:cw-l2", steps=2), progress=False)
    assert not model.training and not any(m.training for m in model.modules())


def test_baselines_run_untargeted_only(setting) -> None:
    # The adapters take no targeted keyword, so run_attack refuses to run them targeted: torchattacks' FAB, for
    # one, never needs the class count that only its multi-targeted version reads.
    require_adapter("torchattacks:fab-l2")
    model, inputs, labels = setting
    with pytest.raises(ValueError, match="attack torchattacks:fab-l2 takes no targeted keyword"):
        run_attack(model, inputs, labels, load_baseline("torchattacks:fab-l2", steps=1), targeted=True, progress=False)


def test_missing_library_is_one_clear_line(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "foolbox", None)
    with pytest.raises(MissingLibraryError, match=r"^foolbox is not installed .*install foolbox==3\.3\.4$"):
        load_baseline("foolbox:ddn", steps=10)


def test_unknown_baseline() -> None:
    with pytest.raises(ValueError, match=r"baseline must be one of .* got 'foolbox:nope'"):
        load_baseline("foolbox:nope", steps=10)


def test_rounds_follow_the_paper_and_the_library() -> None:
    """C&W and EAD search 9 penalty weights (ALMA paper sec. 4); attackbenchlib's APGD searches ε over the rounds
    its own package sets."""
    assert BASELINES["foolbox:cw-l2"].rounds == BASELINES["foolbox:ead"].rounds == 9
    assert BASELINES["adv-lib:ddn"].rounds == 1
    require_adapter("attackbench:apgd-l2")
    from attackbench.attacks import minimal_search_steps

    assert {BASELINES[f"attackbench:apgd-{n}"].rounds for n in ("l1", "l2", "linf")} == {minimal_search_steps}


def test_only_the_attacks_that_search_run_several_rounds() -> None:
    # The budget of every other baseline is one round of steps (a second would double its iterations).
    several = {name for name, baseline in BASELINES.items() if baseline.rounds != 1}
    assert several == {"foolbox:cw-l2", "foolbox:ead", "attackbench:apgd-l1", "attackbench:apgd-l2",
                       "attackbench:apgd-linf"}


def test_adv_libs_attacks_are_imported_when_its_baseline_is_loaded(setting, monkeypatch) -> None:
    # adv-lib does not import its attacks package with itself: the adapter must (here as in a fresh process).
    require_adapter("adv-lib:ddn")
    import adv_lib

    monkeypatch.delattr(adv_lib, "attacks", raising=False)
    for name in [n for n in sys.modules if n.startswith("adv_lib.attacks")]:
        monkeypatch.delitem(sys.modules, name)
    model, inputs, labels = setting
    assert load_baseline("adv-lib:ddn", steps=2)(model, inputs[:1], labels[:1]).shape == inputs[:1].shape


@pytest.mark.parametrize(("name", "overshoot"), [("attackbench:fab-l2", 1.0), ("attackbench:superdeepfool", 1.6)])
def test_attackbench_boundary_attacks_on_a_linear_model(name: str, overshoot: float) -> None:
    """FAB projects onto the linearized boundary: on a linear model that is the closed-form minimal ℓ2
    perturbation. attackbenchlib's SuperDeepFool multiplies each DeepFool step by α = 1.5 (and a 2% overshoot):
    it lands past the boundary, by at most 1.6×."""
    from ..conftest import make_linear_oracle  # type: ignore[import-not-found]

    require_adapter(name)
    oracle = make_linear_oracle(batch=6, seed=4, classes=10)
    result = run_attack(oracle.model, oracle.inputs, oracle.labels, load_baseline(name, steps=20), progress=False,
                        checks=False)
    assert result.success.all()
    ratio = result.distances["l2"] / oracle.l2
    assert (ratio >= 1 - 1e-4).all() and (ratio <= overshoot + 0.01).all()


def test_attackbench_apgd_l1_needs_two_steps_per_round() -> None:
    # Before: --budget 60 gave it 1 step per ε-search round, and attackbenchlib failed deep inside torch
    # ("zeros: Dimension size must be non-negative"); now load_baseline and the benchmark refuse it in one line.
    from edgewise.eval.baselines import _import
    from edgewise.eval.benchmark import baseline_attack, check_steps

    from ..conftest import make_linear_oracle  # type: ignore[import-not-found]

    name = "attackbench:apgd-l1"
    require_adapter(name)
    oracle = make_linear_oracle(batch=4, seed=4, classes=3)
    module = _import("attackbench")
    with pytest.raises(RuntimeError, match="must be non-negative"):  # the library's own limit, unguarded
        BASELINES[name].build(module, 1)(oracle.model, oracle.inputs, oracle.labels)
    BASELINES[name].build(module, 2)(oracle.model, oracle.inputs, oracle.labels)
    with pytest.raises(ValueError, match=r"baseline 'attackbench:apgd-l1' needs steps >= 2 \(per round of its "
                                         r"search\), got 1"):
        load_baseline(name, steps=1)
    spec = baseline_attack(name, distance="l1")
    with pytest.raises(ValueError, match="--budget 60 gives attackbench:apgd-l1 1 steps per round of its 20; it "
                                         "needs at least 2"):
        check_steps([spec], [30], 60)
    check_steps([spec], [40], 80)
