import pytest
import torch

from edgewise.losses import dlr_plus, is_adversarial, logit_margin, other_argmax, other_max, targeted_dlr_plus


def test_by_hand() -> None:
    logits = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.0, 2.0, 1.0, 5.0]])
    labels = torch.tensor([0, 1])
    assert other_max(logits, labels).tolist() == [1.0, 5.0]
    assert other_argmax(logits, labels).tolist() == [1, 3]
    assert other_argmax(torch.tensor([[4.0, 2.0, 2.0]]), torch.tensor([0])).tolist() == [1]  # the first of a tie
    assert logit_margin(logits, labels).tolist() == [2.0, -3.0]
    # DLR⁺ = (z_y − max_{i≠y} z_i) / (z_π1 − z_π3)
    torch.testing.assert_close(dlr_plus(logits, labels), torch.tensor([2.0 / 3.0, -3.0 / 4.0]))
    # tDLR⁺ = (max_{i≠t} z_i − z_t) / (z_π1 − (z_π3 + z_π4) / 2), targets 3 and 3
    targets = torch.tensor([3, 3])
    torch.testing.assert_close(targeted_dlr_plus(logits, targets), torch.tensor([4.0 / 3.5, -3.0 / 4.5]))
    assert is_adversarial(logits, labels).tolist() == [False, True]
    assert is_adversarial(logits, targets, targeted=True).tolist() == [False, True]


def test_sign_matches_misclassification() -> None:
    logits = torch.randn(500, 10, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 10, (500,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(dlr_plus(logits, labels) < 0, is_adversarial(logits, labels))
    assert torch.equal(targeted_dlr_plus(logits, labels) < 0, is_adversarial(logits, labels, targeted=True))


def test_minimum_number_of_classes() -> None:
    with pytest.raises(ValueError, match="DLR\\+ needs a model with at least 3 classes, got 2"):
        dlr_plus(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="tDLR\\+ needs a model with at least 4 classes, got 3"):
        targeted_dlr_plus(torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))


def test_sign_holds_when_the_top_logits_tie() -> None:
    # z_π1 = z_π3: DLR⁺'s denominator is only the 1e-12 guard, which must keep the sign of the margin
    # (a saturated or constant-logit model gives such rows).
    logits = torch.tensor([[1.0, 1.0, 1.0, 0.0], [2.0, 2.0, 2.0, 2.0], [0.0, 3.0, 3.0, 3.0]])
    labels = torch.tensor([3, 1, 0])
    values = dlr_plus(logits, labels)
    assert values.tolist()[1] == 0.0
    assert float(values[0]) < 0 and float(values[2]) < 0          # misclassified: negative, however flat the top
    assert is_adversarial(logits, labels)[[0, 2]].all()
    # tDLR⁺ with z_π1 = z_π4: a target below the flat top is not reached, the constraint must stay positive
    assert float(targeted_dlr_plus(torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]]), torch.tensor([4]))) > 0
