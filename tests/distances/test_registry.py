"""The registry: the built-in distances with what they are, the arguments named in get's errors, register's
checks and its replace rule."""

from __future__ import annotations

import pytest
import torch

from edgewise.distances import registry
from edgewise.distances.lp import l1
from edgewise.distances.registry import entry, get, names, pairwise, register

# ℓ0 and ℓ∞ are documented as metrics only (no useful gradient); the others are attack distances.
DIFFERENTIABLE = {"l0": False, "l1": True, "l2": True, "linf": False, "ciede2000": True, "ssim": True, "lpips": True}


def test_builtin_distances_and_what_they_are() -> None:
    assert names() == sorted(DIFFERENTIABLE)
    for name, differentiable in DIFFERENTIABLE.items():
        found = entry(name)
        assert found.name == name and found.differentiable is differentiable
        assert isinstance(found.description, str) and found.description
        assert isinstance(found.matches, str) and found.matches


def test_get_names_its_arguments_in_errors() -> None:
    reference = torch.rand(2, 4)
    with pytest.raises(ValueError, match=r"^reference must have shape \(B, \.\.\.\)"):
        get("l2")(torch.rand(4))
    with pytest.raises(ValueError, match=r"^perturbed must have the shape of reference \(2, 4\), got \(2, 5\)"):
        get("l2")(reference)(torch.rand(2, 5))


def test_register_checks_and_replaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    for bad in ("", 3):
        with pytest.raises(TypeError, match=r"^name must be a non-empty str"):
            register(bad, pairwise(l1), description="d", matches="m")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^distance 'l1' is already registered"):
        register("l1", pairwise(l1), description="d", matches="m")
    register("l1", pairwise(l1), description="again", matches="m", replace=True)
    register("new", pairwise(l1), description="d", matches="m")
    assert entry("l1").description == "again" and entry("new").differentiable
    reference, perturbed = torch.rand(3, 5), torch.rand(3, 5)
    torch.testing.assert_close(get("new")(reference)(perturbed), l1(reference, perturbed), rtol=0, atol=0)
