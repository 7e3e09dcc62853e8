"""The JSON identity of an attack (describe_attack) written out in full, and the model fingerprint's extra state.

Every part of a description is what a reader of results.json sees and what a resumed run compares, so the test
writes the expected description out by hand: tensors by digest, dtype and shape; containers element by element
down to ``_DEPTH`` levels; objects without a stable form by their class; callables by module and qualified name.
"""

from __future__ import annotations

import enum
import functools

import torch
from torch import nn

from edgewise.eval.provenance import describe_attack, fingerprint_model, fingerprint_tensor


def _attack(model, inputs, labels, *, steps=3, schedule=(1, (2, 3)), **options):
    return inputs


class _Scaled:
    """A callable object: it has no ``__qualname__`` or ``__name__`` of its own, its class names it."""

    def __call__(self, model, inputs, labels, *, scale=1.0):
        return inputs


class _Named(enum.Enum):
    IDENTITY = "identity"

    def __call__(self, model, inputs, labels):
        return inputs


MODULE = _attack.__module__


def _nested(value: object, levels: int) -> object:
    for _ in range(levels):
        value = [value]
    return value


def test_a_partial_is_described_option_by_option() -> None:
    weights = torch.tensor([1.0, 2.0])
    attack = functools.partial(_attack, steps=5, weights=weights, options={"inner": {"level": 2}, "list": [1.5, "a"]},
                               transform="abc".upper, helper=_Scaled(), callback=print)
    assert describe_attack(attack) == {
        "partial": {"func": f"{MODULE}._attack", "defaults": {"steps": 3, "schedule": [1, [2, 3]]}},
        "args": [],
        "keywords": {  # the callback only observes: not part of the identity
            "steps": 5,
            "weights": {"tensor": fingerprint_tensor(weights), "dtype": "torch.float32", "shape": [2]},
            "options": {"inner": {"level": 2}, "list": [1.5, "a"]},
            "transform": {"func": "str.upper"},  # a builtin method has no module
            "helper": {"type": f"{MODULE}._Scaled"},
        },
    }


def test_callable_objects_and_enum_members_are_named_by_their_class() -> None:
    assert describe_attack(functools.partial(_Scaled(), scale=2.0)) == {
        "partial": {"func": f"{MODULE}._Scaled", "defaults": {"scale": 1.0}}, "args": [], "keywords": {"scale": 2.0}}
    assert describe_attack(_Named.IDENTITY) == {"callable": f"{MODULE}._Named.IDENTITY"}


def test_bound_values_are_followed_four_levels_deep() -> None:
    # _DEPTH = 4 levels from the attack: a bound keyword (level 1) nested in 3 lists is told apart, in 4 it is
    # described by its type only; so are a default of the partial's function (level 2) in 2 and 3 lists.
    def keyword(value: object, levels: int) -> object:
        return describe_attack(functools.partial(_attack, opt=_nested(value, levels)))["keywords"]["opt"]

    assert keyword(1.0, 3) == [[[1.0]]] and keyword(1.0, 3) != keyword(2.0, 3)
    assert keyword(1.0, 4) == [[[{"type": "builtins.list"}]]] == keyword(2.0, 4)

    def deep(model, inputs, labels, *, near=[[1.0]], far=[[[1.0]]]):  # noqa: B006 (never mutated)
        return inputs

    defaults = describe_attack(functools.partial(deep))["partial"]["defaults"]
    assert defaults == {"near": [[1.0]], "far": [[{"type": "builtins.list"}]]}
    loop: list[object] = []
    loop.append(loop)  # a container holding itself ends at the depth limit
    assert keyword(loop, 0) == [[[{"type": "builtins.list"}]]]


class _Stateful(nn.Module):
    def __init__(self, state: object) -> None:
        super().__init__()
        self.state = state

    def get_extra_state(self) -> object:
        return self.state

    def set_extra_state(self, state: object) -> None:
        self.state = state


def test_model_fingerprint_sees_the_extra_state_as_a_value() -> None:
    # Equal extra states (dicts in another insertion order) give equal fingerprints; any difference, four
    # levels down too, another one.
    assert fingerprint_model(_Stateful({"a": 1, "b": [2]})) == fingerprint_model(_Stateful({"b": [2], "a": 1}))
    assert fingerprint_model(_Stateful({"a": [1.0]})) != fingerprint_model(_Stateful({"a": [2.0]}))
    assert fingerprint_model(_Stateful(_nested(1.0, 4))) != fingerprint_model(_Stateful(_nested(2.0, 4)))
