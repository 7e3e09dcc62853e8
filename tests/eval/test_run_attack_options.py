"""run_attack's options at their edges: dataset indices that are not a non-empty 1-D tensor, keeping 0 images,
and the name of a callable object in the targeted error."""

from __future__ import annotations

import functools

import pytest
import torch

from edgewise.attacks import ddn
from edgewise.eval import run_attack


def identity_attack(model, inputs, labels):
    return inputs.clone()


class Identity:
    """A callable object: it has no ``__name__``."""

    def __call__(self, model, inputs, labels):
        return inputs.clone()


def as_dataset(inputs: torch.Tensor, labels: torch.Tensor) -> list[tuple[torch.Tensor, int]]:
    return [(image, int(label)) for image, label in zip(inputs, labels, strict=True)]


@pytest.mark.parametrize("indices", [torch.tensor([[0, 1]]), torch.tensor([], dtype=torch.long)])
def test_dataset_indices_must_be_one_dimensional_and_non_empty(linear_oracle, indices) -> None:
    o = linear_oracle
    with pytest.raises(ValueError, match=r"^indices must be a non-empty 1-D integer tensor of dataset indices"):
        run_attack(o.model, as_dataset(o.inputs, o.labels), None, identity_attack, indices=indices, progress=False)


def test_keeping_zero_images_keeps_none(linear_oracle) -> None:
    o = linear_oracle
    attack = functools.partial(ddn, steps=10, levels=None)
    none = run_attack(o.model, o.inputs, o.labels, attack, keep_adversarial=0, progress=False, checks=False)
    every = run_attack(o.model, o.inputs, o.labels, attack, keep_adversarial=True, progress=False, checks=False)
    assert bool(every.success.any()) and not bool(none.kept.any())
    assert none.adversarial.shape == (0, *o.inputs.shape[1:])
    assert torch.equal(none.distances["l2"], every.distances["l2"])


def test_targeted_error_names_a_callable_object_by_its_class(linear_oracle) -> None:
    o = linear_oracle
    with pytest.raises(ValueError, match=r"^attack Identity takes no targeted keyword"):
        run_attack(o.model, o.inputs, o.labels, Identity(), targeted=True, progress=False)
