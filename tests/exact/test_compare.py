import math

import pytest
import torch

from edgewise.exact import compare


def test_ratios_over_the_certified_samples_only() -> None:
    exact = torch.tensor([1.0, 2.0, 4.0, 0.0, 3.0, math.inf])
    lower = torch.tensor([1.0, 2.0, 3.999, 0.0, 2.0, 5.0])
    status = ["optimal", "optimal", "optimal", "optimal", "time_limit", "infeasible"]
    attack = torch.tensor([1.005, 2.2, math.inf, 0.0, 1.0, 6.0])
    stats = compare(exact, lower, status, {"a": attack})["a"]
    # samples 0-2 count (3 is a clean error at 0, 4 not certified, 5 has no exact distance)
    assert stats["n"] == 3 and stats["failures"] == 1
    assert stats["median"] == pytest.approx(1.1)
    assert stats["mean"] == math.inf and stats["p95"] == math.inf
    assert stats["within_1pct"] == pytest.approx(1 / 3)
    # sample 4: the attack (1.0) is below the certified lower bound (2.0), a bug the comparison must show
    assert stats["below_lower_bound"] == [4]


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match=r"attacks\['a'\] must have shape"):
        compare(torch.ones(3), torch.ones(3), ["optimal"] * 3, {"a": torch.ones(2)})
