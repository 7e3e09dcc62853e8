"""Targeted runs keep the true labels: clean accuracy and ``clean_correct`` are measured against them, the
targets are recorded beside them, and "already predicted as the target" stays a notion of its own."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from edgewise.attacks import ddn
from edgewise.eval import AttackResult, run_attack
from edgewise.eval.report import sample_records

OPTIONS = {"progress": False, "checks": False}


def queries_once(model, inputs, labels, *, targeted=False):
    """Spends one forward and changes nothing: no sample is broken by it."""
    model(inputs)
    return inputs.clone()


def case(oracle_factory):
    """The oracle with 3 classes predicts ``sign > 0`` (its ``labels``) and never class 2, by construction.

    Samples 0-4: labelled as predicted, target the other class. 5-6: labelled 2 (misclassified), target the other
    class. 7: labelled 2, target its prediction (already adversarial)."""
    o = oracle_factory(classes=3)
    predicted = o.labels
    labels = predicted.clone()
    labels[5:] = 2
    targets = 1 - predicted
    targets[7] = predicted[7]
    return o, labels, targets


def test_clean_accuracy_is_measured_against_the_true_labels(oracle_factory) -> None:
    o, labels, targets = case(oracle_factory)
    attack = functools.partial(ddn, steps=50, levels=None)
    result = run_attack(o.model, o.inputs, labels, attack, targeted=True, targets=targets, **OPTIONS)
    assert result.clean_correct.tolist() == [True] * 5 + [False] * 3
    assert torch.equal(result.labels, labels) and torch.equal(result.targets, targets)
    assert result.success.tolist() == [True] * 8  # the oracle's margins are tiny: every target is reached
    assert float(result.distances["l2"][7]) == 0.0 and bool((result.distances["l2"][:7] > 0).all())
    summary = result.summary(eps=(0.0,))
    assert summary["clean_accuracy"] == 5 / 8
    assert summary["success_rate_on_correct"] == 1.0
    assert summary["median_distance_on_correct"] == pytest.approx(float(result.distances["l2"][:5].median()))
    assert summary["robust_accuracy"] == {"0.0": 5 / 8}  # at ε = 0: the clean accuracy, misclassified not robust


def test_a_targeted_sample_left_unbroken_counts_as_no_adversarial(oracle_factory) -> None:
    o, labels, targets = case(oracle_factory)
    result = run_attack(o.model, o.inputs, labels, queries_once, targeted=True, targets=targets, **OPTIONS)
    assert result.success.tolist() == [False] * 7 + [True]  # only the sample already at its target
    summary = result.summary()
    assert summary["no_adversarial"] == 7  # the misclassified 5 and 6 needed the attack too
    assert summary["success_rate_on_correct"] == 0.0


def test_untargeted_results_record_no_target(linear_oracle) -> None:
    o = linear_oracle
    result = run_attack(o.model, o.inputs, o.labels, queries_once, **OPTIONS)
    assert result.targets.tolist() == [-1] * 8
    assert all(row["target"] is None and row["label"] == int(o.labels[i])
               for i, row in enumerate(sample_records(result)))


def test_samples_record_the_label_and_the_target(oracle_factory) -> None:
    o, labels, targets = case(oracle_factory)
    result = run_attack(o.model, o.inputs, labels, queries_once, targeted=True, targets=targets, **OPTIONS)
    rows = sample_records(result)
    assert [row["label"] for row in rows] == labels.tolist()
    assert [row["target"] for row in rows] == targets.tolist()
    assert [row["clean_correct"] for row in rows] == [True] * 5 + [False] * 3


class Pairs(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        self.inputs, self.labels = inputs, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.inputs[index], int(self.labels[index])


def test_a_dataset_takes_targets_in_the_order_of_its_indices(oracle_factory, tmp_path: Path) -> None:
    o, labels, targets = case(oracle_factory)
    order = torch.tensor([6, 0, 7, 3])
    options = {**OPTIONS, "batch_size": 2, "resume_dir": tmp_path}
    result = run_attack(o.model, Pairs(o.inputs, labels), None, queries_once, targeted=True,
                        targets=targets[order], indices=order, **options)
    assert torch.equal(result.labels, labels[order]) and torch.equal(result.targets, targets[order])
    assert result.clean_correct.tolist() == [False, True, False, True]
    # Other targets for the same samples: the stored batches are not this run's members, so they are recomputed.
    other = targets[order].clone()
    other[1] = 2
    again = run_attack(o.model, Pairs(o.inputs, labels), None, queries_once, targeted=True, targets=other,
                       indices=order, **options)
    assert torch.equal(again.targets, other)


def test_targets_are_checked(oracle_factory) -> None:
    o, labels, targets = case(oracle_factory)

    def run(**arguments) -> AttackResult:
        return run_attack(o.model, o.inputs, labels, queries_once, **{**OPTIONS, **arguments})

    with pytest.raises(ValueError, match=r"^targeted=True needs targets, one class per sample to reach"):
        run(targeted=True)
    with pytest.raises(ValueError, match=r"^targets are given but targeted=False"):
        run(targets=targets)
    with pytest.raises(TypeError, match=r"^targets must be an integer tensor, got tensor of shape \(8,\) and dtype "
                                        r"torch.float32"):
        run(targeted=True, targets=targets.float())
    with pytest.raises(ValueError, match=r"^targets must have shape \(8,\), one per evaluated sample, got \(7,\)"):
        run(targeted=True, targets=targets[:7])
    with pytest.raises(ValueError, match=r"^targets must be >= 0, got min -1"):
        run(targeted=True, targets=targets - 1)
    with pytest.raises(ValueError, match=r"^targets must be in \[0, 2\] for a model with 3 classes, got max 3"):
        run(targeted=True, targets=torch.full_like(targets, 3))
    with pytest.raises(ValueError, match=r"^targets must differ from the labels, got the label as target at "
                                         r"dataset indices \[0, 1, 2, 3, 4\]"):
        run(targeted=True, targets=labels)
