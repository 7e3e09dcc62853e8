import functools
from pathlib import Path

import pytest
import torch

from edgewise.attacks import alma, ddn, pgd
from edgewise.data import sample
from edgewise.eval import (
    AttackResult,
    area_under_curve,
    median_distance,
    robust_accuracy,
    robust_accuracy_curve,
    run_attack,
    verify,
)
from edgewise.models import load_model


def identity_attack(model, inputs, labels):
    return inputs.clone()


def test_oracle_distances_and_counts(linear_oracle) -> None:
    o = linear_oracle
    result = run_attack(o.model, o.inputs, o.labels, functools.partial(ddn, steps=50, levels=None), batch_size=3,
                        progress=False)
    assert bool(result.success.all()) and bool(result.verified.all())
    torch.testing.assert_close(result.distances["l2"], (result.adversarial - o.inputs).flatten(1).norm(dim=1))
    assert bool((result.distances["l2"] >= o.l2 * (1 - 1e-4)).all())
    assert result.forwards.tolist() == [50.0] * 8 and result.backwards.tolist() == [50.0] * 8
    assert bool((result.first_adversarial > 0).all()) and int(result.first_adversarial.max()) <= 50
    assert result.indices.tolist() == list(range(8))


def test_lying_attacks_are_caught(linear_oracle) -> None:
    o = linear_oracle

    def out_of_box(model, inputs, labels):
        return inputs + 2.0

    def not_adversarial(model, inputs, labels):
        return inputs + 1e-3

    def nan(model, inputs, labels):
        return inputs * float("nan")

    for attack in (out_of_box, not_adversarial, nan):
        result = run_attack(o.model, o.inputs, o.labels, attack, progress=False)
        assert not bool(result.success.any())
        assert bool(torch.isinf(result.distances["l2"]).all())
        assert result.summary()["failed_verification"] == 8
        assert torch.equal(result.adversarial, o.inputs)


def test_quantization_can_undo_an_adversarial() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.0], [1.0]]))
    inputs = torch.tensor([[[[0.5]]]]) - 0.5   # f(x) = x; class 0 at x = 0
    labels = torch.tensor([0])
    tiny = inputs + 0.001                     # adversarial, but rounds back to 0 on 8 bits
    _, _, found = verify(model, inputs, labels, tiny)
    assert bool(found.all())
    _, _, found = verify(model, inputs, labels, tiny, levels=256)
    assert not bool(found.any())


def test_misclassified_samples_count_at_distance_zero(linear_oracle) -> None:
    o = linear_oracle
    wrong = o.labels.clone()
    wrong[:3] = 1 - wrong[:3]
    result = run_attack(o.model, o.inputs, wrong, identity_attack, progress=False)
    assert result.clean_correct.tolist() == [False] * 3 + [True] * 5
    assert result.success.tolist() == [True] * 3 + [False] * 5
    assert result.distances["l2"][:3].tolist() == [0.0] * 3
    summary = result.summary()
    assert summary["clean_accuracy"] == 5 / 8 and summary["success_rate"] == 3 / 8
    assert summary["success_rate_on_correct"] == 0.0


def test_metrics_by_hand() -> None:
    distances = torch.tensor([0.0, 0.5, 1.0, float("inf")])
    assert median_distance(distances) == 0.5  # torch's lower median of an even count
    assert robust_accuracy(distances, 0.75) == 0.5
    grid = torch.tensor([0.0, 0.5, 1.0, 2.0])
    assert robust_accuracy_curve(distances, grid).tolist() == [0.75, 0.5, 0.25, 0.25]
    assert area_under_curve(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0])) == 0.5


def test_robust_accuracy_at_the_attacks_own_eps_counts_float32_rounding_as_within(linear_oracle) -> None:
    # PGD projects onto the ℓ∞ ball of 0.1 exactly; the returned x + δ, rounded to float32, measures up to a
    # few ulps more than 0.1. Every sample it broke at ε = 0.1 must count as broken at 0.1, not at 0.1000001.
    o = linear_oracle
    result = run_attack(o.model, o.inputs, o.labels, functools.partial(pgd, norm="linf", eps=0.1, steps=20),
                        batch_size=8, progress=False)
    linf = result.distances["linf"]
    assert bool(result.success.all()) and float(linf.max()) > 0.1  # the float32 rounding is there
    assert robust_accuracy(linf, 0.1) == 0.0
    assert robust_accuracy(torch.tensor([0.1 * (1 + 1e-3)]), 0.1) == 1.0  # a real excess still counts


def test_resume_skips_finished_batches(tmp_path: Path, linear_oracle) -> None:
    o = linear_oracle
    calls = []

    def counted(model, inputs, labels, *, generator=None):
        calls.append(len(inputs))
        return ddn(model, inputs, labels, steps=20, levels=None, generator=generator)

    first = run_attack(o.model, o.inputs, o.labels, counted, batch_size=3, resume_dir=tmp_path, progress=False)
    assert calls == [3, 3, 2]
    (tmp_path / "batch-00000003-3.pt").unlink()
    again = run_attack(o.model, o.inputs, o.labels, counted, batch_size=3, resume_dir=tmp_path, progress=False)
    assert calls == [3, 3, 2, 3]
    for name in AttackResult.__dataclass_fields__:
        if name not in ("distances", "seconds"):
            assert torch.equal(getattr(first, name), getattr(again, name)), name
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_arguments(linear_oracle) -> None:
    o = linear_oracle
    with pytest.raises(ValueError, match="batch_size must be > 0"):
        run_attack(o.model, o.inputs, o.labels, identity_attack, batch_size=0)
    with pytest.raises(TypeError, match="attack must be callable"):
        run_attack(o.model, o.inputs, o.labels, "ddn")
    with pytest.raises(ValueError, match="attack must return a tensor of shape"):
        run_attack(o.model, o.inputs, o.labels, lambda m, x, y: x[:2], progress=False)


def test_failure_indicators(linear_oracle) -> None:
    o = linear_oracle

    def queries_nan(model, inputs, labels):
        model(inputs * float("nan"))
        return inputs.clone()

    def returns_nan(model, inputs, labels):
        model(inputs)
        return inputs * float("nan")

    found = run_attack(o.model, o.inputs, o.labels, functools.partial(ddn, steps=20, levels=None), progress=False)
    summary = found.summary()
    assert (summary["no_adversarial"], summary["non_finite"], summary["stalled"]) == (0, 0, 0)
    for attack, non_finite in ((queries_nan, 8), (returns_nan, 8), (identity_attack, 0)):
        summary = run_attack(o.model, o.inputs, o.labels, attack, progress=False, checks=False).summary()
        assert summary["non_finite"] == non_finite
        assert summary["stalled"] == 8
    assert summary["no_adversarial"] == 0, "identity_attack makes no query: no budget was spent"
    wrong = o.labels.clone()
    wrong[:3] = 1 - wrong[:3]
    spent = run_attack(o.model, o.inputs, wrong, returns_nan, progress=False, checks=False)
    assert spent.stalled.tolist() == [False] * 3 + [True] * 5
    assert spent.summary()["no_adversarial"] == 5 and spent.summary()["failed_verification"] == 5


@pytest.fixture(scope="module")
def zoo_batch() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    inputs, labels = sample()
    chosen = torch.arange(0, 1000, 125)  # one image of each of 8 classes
    return load_model("smallcnn-fmnist"), inputs[chosen], labels[chosen]


@pytest.mark.parametrize("attack", [functools.partial(ddn, steps=10), functools.partial(alma, steps=20)],
                         ids=["ddn", "alma"])
@pytest.mark.usefixtures("single_thread")
def test_targeted_reaches_the_attack(zoo_batch, attack) -> None:
    model, inputs, labels = zoo_batch
    targets = (labels + 1) % 10
    result = run_attack(model, inputs, targets, attack, targeted=True, progress=False, checks=False)
    with torch.no_grad():
        predicted = model(result.adversarial).argmax(1)
    # Success means the prediction IS the target: checked here on the returned images, independently of the
    # result's own flags. An attack left untargeted pushes away from the label it is given and reaches the
    # target rarely.
    assert int((predicted == targets).sum()) >= 7
    assert torch.equal(result.success, predicted == targets)


def test_targeted_refuses_what_cannot_be_targeted(linear_oracle) -> None:
    o = linear_oracle
    with pytest.raises(ValueError, match=r"attack is bound to targeted=False, run_attack has targeted=True"):
        run_attack(o.model, o.inputs, o.labels, functools.partial(ddn, targeted=False), targeted=True)
    with pytest.raises(ValueError, match=r"attack is bound to targeted=True, run_attack has targeted=False"):
        run_attack(o.model, o.inputs, o.labels, functools.partial(functools.partial(ddn, targeted=True), steps=2))
    with pytest.raises(ValueError, match=r"attack identity_attack takes no targeted keyword, run_attack has "
                                         r"targeted=True"):
        run_attack(o.model, o.inputs, o.labels, identity_attack, targeted=True)
    seen = []

    def spy(model, inputs, labels, *, targeted=False):
        seen.append(targeted)
        return inputs.clone()

    run_attack(o.model, o.inputs, o.labels, spy, targeted=True, progress=False, checks=False)
    run_attack(o.model, o.inputs, o.labels, functools.partial(spy, targeted=True), targeted=True, progress=False,
               checks=False)
    run_attack(o.model, o.inputs, o.labels, spy, progress=False, checks=False)
    assert seen == [True, True, False]
