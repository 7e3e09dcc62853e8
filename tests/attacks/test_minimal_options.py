"""The minimal wrapper's documented callback state and the names in its option errors (beside
tests/attacks/test_minimal.py, which checks its search against closed forms)."""

from __future__ import annotations

import pytest
import torch

from edgewise.attacks import minimal, pgd


def test_callback_reports_the_documented_keys_each_round(linear_oracle) -> None:
    o = linear_oracle
    seen: list[tuple[int, dict[str, torch.Tensor]]] = []
    minimal(o.model, o.inputs, o.labels, attack=pgd, norm="l2", steps=2, binary_search_steps=3,
            callback=lambda step, state: seen.append((step, state)))
    assert [step for step, _ in seen] == [0, 1, 2]
    assert all(set(state) == {"eps", "best_distance", "adversarial"} for _, state in seen)


@pytest.mark.parametrize(("options", "error", "match"), [
    ({"steps": 0}, ValueError, "^steps must be > 0"),
    ({"binary_search_steps": 0}, ValueError, "^binary_search_steps must be > 0"),
])
def test_bad_options_are_named(linear_oracle, options, error, match) -> None:
    o = linear_oracle
    with pytest.raises(error, match=match):
        minimal(o.model, o.inputs, o.labels, attack=pgd, **options)
