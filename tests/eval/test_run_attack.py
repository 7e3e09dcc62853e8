import copy
import functools
import re
import shutil
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

    class Counted:  # its state is not part of what it computes: described by its class
        def __call__(self, model, inputs, labels, *, generator=None):
            calls.append(len(inputs))
            return ddn(model, inputs, labels, steps=20, levels=None, generator=generator)

    counted = Counted()

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


def test_a_model_in_train_mode_is_refused_before_any_forward(linear_oracle) -> None:
    """Before: the checks warned, then the clean forward in train mode updated BatchNorm's running statistics of
    the caller's model, and an attack that does not check (a user's) ran on dropout draws and batch statistics."""
    o = linear_oracle
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(1), o.model).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"model must be in eval mode .* module\(s\) in train mode: Sequential, 0, 1"):
        run_attack(model, o.inputs, o.labels, identity_attack, progress=False)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


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
    result = run_attack(model, inputs, labels, attack, targeted=True, targets=targets, progress=False, checks=False)
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

    targets = 1 - o.labels
    run_attack(o.model, o.inputs, o.labels, spy, targeted=True, targets=targets, progress=False, checks=False)
    run_attack(o.model, o.inputs, o.labels, functools.partial(spy, targeted=True), targeted=True, targets=targets,
               progress=False, checks=False)
    run_attack(o.model, o.inputs, o.labels, spy, progress=False, checks=False)
    assert seen == [True, True, False]


class Recorder:
    """ddn, recording what each call received (dataset identity checks); its state is not part of what it runs."""

    def __init__(self, steps: int = 5) -> None:
        self.steps = steps
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, model, inputs, labels, *, generator=None):
        self.calls.append((inputs.clone(), labels.clone()))
        return ddn(model, inputs, labels, steps=self.steps, levels=None, generator=generator)


def _same(first: AttackResult, second: AttackResult) -> None:
    for name in AttackResult.__dataclass_fields__:
        if name not in ("distances", "seconds"):
            assert torch.equal(getattr(first, name), getattr(second, name)), name
    for name, value in first.distances.items():
        assert torch.equal(value, second.distances[name]), name


def test_resume_refuses_a_folder_of_another_run(tmp_path: Path, linear_oracle) -> None:
    o = linear_oracle
    attack = functools.partial(ddn, steps=5, levels=None)
    options = {"batch_size": 4, "progress": False, "checks": False}
    first = run_attack(o.model, o.inputs, o.labels, attack, resume_dir=tmp_path, **options)
    other_model = copy.deepcopy(o.model)
    with torch.no_grad():
        other_model[1].weight[1, 0] += 1e-3
    refused = [
        ({"attack": functools.partial(ddn, steps=6, levels=None)}, "attack.keywords.steps=5, this run has "
                                                                   "attack.keywords.steps=6"),
        ({"attack": functools.partial(alma, steps=5, levels=None)}, "attack.partial.func='edgewise.attacks.ddn.ddn'"),
        ({"model": other_model}, "model='"),
        ({"seed": 1}, "seed=0, this run has seed=1"),
        ({"levels": 256}, "levels=None, this run has levels=256"),
        ({"distances": ("l2",)}, "distances="),
        ({"batch_size": 3}, "batch_size=4, this run has batch_size=3"),
    ]
    for change, message in refused:
        arguments = {"model": o.model, "attack": attack, **options, **change}
        model, chosen = arguments.pop("model"), arguments.pop("attack")
        with pytest.raises(ValueError, match=f"^resume_dir {re.escape(str(tmp_path))} was written by a run with "
                                             f"{re.escape(message)}"):
            run_attack(model, o.inputs, o.labels, chosen, resume_dir=tmp_path, **arguments)
    # A targeted run of the same samples: targeted differs (and the members' targets).
    with pytest.raises(ValueError, match="targeted=False, this run has targeted=True"):
        run_attack(o.model, o.inputs, o.labels, attack, targeted=True, targets=1 - o.labels, resume_dir=tmp_path,
                   **options)
    # A batch file of another run put into this folder is refused too (each batch carries its record).
    other = tmp_path / "other"
    run_attack(o.model, o.inputs, o.labels, functools.partial(ddn, steps=6, levels=None), resume_dir=other,
               **options)
    shutil.copy(other / "batch-00000004-4.pt", tmp_path / "batch-00000004-4.pt")
    with pytest.raises(ValueError, match=r"holds batch-00000004-4\.pt, written by a run with "
                                         r"attack\.keywords\.steps=6"):
        run_attack(o.model, o.inputs, o.labels, attack, resume_dir=tmp_path, **options)
    (tmp_path / "batch-00000004-4.pt").unlink()
    _same(first, run_attack(o.model, o.inputs, o.labels, attack, resume_dir=tmp_path, **options))


def test_resume_computes_only_missing_or_changed_batches(tmp_path: Path, linear_oracle) -> None:
    o = linear_oracle
    attack = Recorder()
    options = {"batch_size": 4, "progress": False, "checks": False, "resume_dir": tmp_path}
    run_attack(o.model, o.inputs[:6], o.labels[:6], attack, **options)
    assert [len(x) for x, _ in attack.calls] == [4, 2]
    larger = run_attack(o.model, o.inputs, o.labels, attack, **options)
    # Batch 0..3 is reused; batch 4.. had members 4, 5 and now 4..7: recomputed whole, never mixed.
    assert [len(x) for x, _ in attack.calls] == [4, 2, 4]
    assert torch.equal(attack.calls[-1][0], o.inputs[4:8])
    fresh = run_attack(o.model, o.inputs, o.labels, attack, batch_size=4, progress=False, checks=False)
    _same(larger, fresh)
    changed = o.inputs.clone()
    changed[5] = changed[5].flip(-1)           # another image at the same index: its batch is recomputed
    relabelled = o.labels.clone()
    relabelled[1] = 1 - relabelled[1]          # another label: its batch is recomputed
    calls = len(attack.calls)
    run_attack(o.model, changed, relabelled, attack, **options)
    assert [len(x) for x, _ in attack.calls[calls:]] == [4, 4]
    assert torch.equal(attack.calls[-2][1], relabelled[:4]) and torch.equal(attack.calls[-1][0], changed[4:])
    # Other dataset indices for the same rows: other members, recomputed.
    calls = len(attack.calls)
    run_attack(o.model, o.inputs, o.labels, attack, indices=torch.arange(8) + 100, **options)
    assert len(attack.calls) == calls + 2


def test_resume_recomputes_batch_files_without_a_record(tmp_path: Path, linear_oracle) -> None:
    o = linear_oracle
    attack = Recorder()
    options = {"batch_size": 4, "progress": False, "checks": False, "resume_dir": tmp_path}
    first = run_attack(o.model, o.inputs, o.labels, attack, **options)
    path = tmp_path / "batch-00000000-4.pt"
    torch.save(torch.load(path, weights_only=True)["result"], path)  # the layout before records existed
    again = run_attack(o.model, o.inputs, o.labels, attack, **options)
    assert [len(x) for x, _ in attack.calls] == [4, 4, 4]
    _same(first, again)


class Images:
    """A map-style dataset over tensors that logs which indices were read, and when."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        self.inputs, self.labels = inputs, labels
        self.read: list[int] = []

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        self.read.append(index)
        return self.inputs[index].clone(), int(self.labels[index])


def test_dataset_gives_the_results_of_its_tensors(linear_oracle) -> None:
    o = linear_oracle
    attack = functools.partial(ddn, steps=5, levels=None)
    picked = torch.tensor([6, 1, 7, 2, 0])
    dataset = Images(o.inputs, o.labels)
    streamed = run_attack(o.model, dataset, None, attack, indices=picked, batch_size=2, progress=False,
                          keep_adversarial=True)
    direct = run_attack(o.model, o.inputs[picked], o.labels[picked], attack, indices=picked, batch_size=2,
                        progress=False)
    _same(streamed, direct)
    assert streamed.indices.tolist() == picked.tolist()
    assert torch.equal(streamed.labels, o.labels[picked])
    every = run_attack(o.model, dataset, None, attack, batch_size=3, progress=False, checks=False)
    assert every.indices.tolist() == list(range(8)) and torch.equal(every.labels, o.labels)


def test_dataset_is_read_one_batch_at_a_time(linear_oracle) -> None:
    o = linear_oracle
    dataset = Images(o.inputs, o.labels)
    read_before_call = []

    def spy(model, inputs, labels):
        read_before_call.append(len(dataset.read))
        return inputs.clone()

    run_attack(o.model, dataset, None, spy, batch_size=3, progress=False, checks=False)
    assert read_before_call == [3, 6, 8] and dataset.read == list(range(8))


def test_keep_adversarial_holds_only_what_is_asked(linear_oracle) -> None:
    o = linear_oracle
    attack = functools.partial(ddn, steps=20, levels=None)
    wrong = o.labels.clone()
    wrong[1] = 1 - wrong[1]  # misclassified without attack: not a broken sample, its image is not kept for k
    every = run_attack(o.model, o.inputs, wrong, attack, batch_size=3, progress=False)
    assert bool(every.kept.all()) and every.adversarial.shape == o.inputs.shape
    dataset = Images(o.inputs, wrong)
    none = run_attack(o.model, dataset, None, attack, batch_size=3, progress=False)
    assert not bool(none.kept.any()) and none.adversarial.shape == (0, *o.inputs.shape[1:])
    assert torch.equal(none.distances["l2"], every.distances["l2"])
    three = run_attack(o.model, dataset, None, attack, batch_size=3, progress=False, keep_adversarial=3)
    assert three.kept.tolist() == [True, False, True, True] + [False] * 4
    assert torch.equal(three.adversarial, every.adversarial[[0, 2, 3]])
    picked = three.take(torch.tensor([3, 1, 0, 3]))  # reorder, skip, repeat: images follow their samples
    assert picked.kept.tolist() == [True, False, True, True]
    assert torch.equal(picked.adversarial, every.adversarial[[3, 0, 3]])
    joined = AttackResult.concatenate([none, three])
    assert torch.equal(joined.adversarial, three.adversarial)
    assert joined.kept.tolist() == [False] * 8 + three.kept.tolist()
    with pytest.raises(ValueError, match="keep_adversarial must be a bool, an int >= 0 or None, got -1"):
        run_attack(o.model, dataset, None, attack, keep_adversarial=-1)


def test_resume_stores_what_is_kept_and_recomputes_what_it_lacks(tmp_path: Path, linear_oracle) -> None:
    o = linear_oracle
    attack = Recorder()
    options = {"batch_size": 4, "progress": False, "checks": False, "resume_dir": tmp_path}
    dataset = Images(o.inputs, o.labels)
    none = run_attack(o.model, dataset, None, attack, **options)
    assert not any(torch.load(path, weights_only=True)["result"]["kept"].any() for path in tmp_path.glob("*.pt"))
    again = run_attack(o.model, dataset, None, attack, keep_adversarial=False, **options)
    assert len(attack.calls) == 2
    _same(none, again)
    every = run_attack(o.model, dataset, None, attack, keep_adversarial=True, **options)
    assert len(attack.calls) == 4, "stored without images: recomputed to keep them"
    assert every.adversarial.shape == o.inputs.shape
    assert torch.equal(every.distances["l2"], none.distances["l2"])


def test_dataset_bad_arguments(linear_oracle) -> None:
    o = linear_oracle
    dataset = Images(o.inputs, o.labels)
    with pytest.raises(TypeError, match="inputs must be a tensor with labels, or a map-style dataset with "
                                        "labels=None, got Tensor and labels=None"):
        run_attack(o.model, o.inputs, None, identity_attack)
    with pytest.raises(ValueError, match=r"indices must be in \[0, 7\] \(the dataset has 8 samples\), got min 0 "
                                         "max 8"):
        run_attack(o.model, dataset, None, identity_attack, indices=torch.tensor([0, 8]))
    with pytest.raises(ValueError, match="indices must be a non-empty 1-D integer tensor"):
        run_attack(o.model, dataset, None, identity_attack, indices=torch.tensor([0.5]))
    outside = Images(o.inputs + 1, o.labels)
    with pytest.raises(ValueError, match=r"inputs must be in \[0, 1\]"):
        run_attack(o.model, outside, None, identity_attack, progress=False)


def test_failure_indicators_see_the_queries_of_a_subset(linear_oracle) -> None:
    # An attack that queries only the samples still open (as auto does where the clean prediction is already
    # wrong): its rows are the samples nearest to them, so a sample it moves is not reported as stalled, and one
    # it never queries past the first forward is.
    o = linear_oracle
    wrong = o.labels.clone()
    wrong[0] = 1 - wrong[0]  # a clean error: the attack leaves it out
    untouched = 7

    def open_only(model, inputs, labels):
        with torch.no_grad():
            open_ = model(inputs).argmax(1) == labels
        open_[untouched] = False
        index = open_.nonzero().squeeze(1)
        found = ddn(model, inputs[index], labels[index], steps=20, levels=None)
        return inputs.clone().index_copy(0, index, found)

    result = run_attack(o.model, o.inputs, wrong, open_only, progress=False, checks=False)
    moved = [i for i in range(len(wrong)) if i not in (0, untouched)]
    assert bool(result.success[moved].all())
    assert result.stalled.tolist() == [i == untouched for i in range(len(wrong))]
    assert bool((result.first_adversarial[moved] > 1).all()) and int(result.first_adversarial[untouched]) == 0
