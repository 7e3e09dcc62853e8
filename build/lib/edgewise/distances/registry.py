"""The registry of distances: names -> factories that bind a reference batch.

A factory is called as ``factory(reference, **options)`` once per batch (it may precompute features of the
reference) and returns ``distance(perturbed) -> (B,)`` per-sample distances, differentiable in ``perturbed``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from edgewise.validation import check_batch, check_like

DistanceFn = Callable[[torch.Tensor], torch.Tensor]
Factory = Callable[..., DistanceFn]
PairDistance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Entry:
    """A registered distance: its factory and what it is, exactly (the reference implementation it matches)."""

    name: str
    factory: Factory
    description: str
    matches: str
    differentiable: bool = True


_REGISTRY: dict[str, Entry] = {}


def register(name: str, factory: Factory, *, description: str, matches: str, differentiable: bool = True,
             replace: bool = False) -> None:
    """Add a distance factory under ``name``; ``replace=True`` to overwrite an existing entry."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {type(factory).__name__}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"distance {name!r} is already registered; pass replace=True to overwrite it")
    _REGISTRY[name] = Entry(name, factory, description, matches, differentiable)


def entry(name: str) -> Entry:
    """The registry entry of ``name`` (ValueError naming the known distances otherwise)."""
    if name not in _REGISTRY:
        raise ValueError(f"distance must be one of {sorted(_REGISTRY)}, got {name!r}")
    return _REGISTRY[name]


def get(name: str, **options: Any) -> Callable[[torch.Tensor], DistanceFn]:
    """The factory of distance ``name`` with ``options`` bound: ``get("l2")(reference)(perturbed)``."""
    factory = entry(name).factory

    def bound(reference: torch.Tensor) -> DistanceFn:
        check_batch("reference", reference)
        measure = factory(reference, **options)

        def distance(perturbed: torch.Tensor) -> torch.Tensor:
            check_like("perturbed", perturbed, reference, "reference")
            return measure(perturbed)

        return distance

    return bound


def names() -> list[str]:
    """Names of the registered distances."""
    return sorted(_REGISTRY)


def pairwise(distance: PairDistance) -> Factory:
    """A factory from a two-argument distance ``(reference, perturbed) -> (B,)``."""

    def factory(reference: torch.Tensor) -> DistanceFn:
        return lambda perturbed: distance(reference, perturbed)

    return factory
