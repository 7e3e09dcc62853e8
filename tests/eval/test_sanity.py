import warnings

import pytest
import torch
from torch import nn

from edgewise.eval import run_attack
from edgewise.eval.sanity import SanityWarning, check_evaluation


class Quantized(nn.Module):
    """A model with a non-differentiable quantization of its input inside: its input gradient is 0."""

    def __init__(self, model: nn.Module, levels: int = 4) -> None:
        super().__init__()
        self.model = model
        self.levels = levels

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(inputs * (self.levels - 1)) / (self.levels - 1))


class Noisy(nn.Module):
    """A randomized model: dropout applied in eval mode as well."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(nn.functional.dropout(inputs, 0.5, training=True))


def checks(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> set[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        findings = check_evaluation(model, inputs, labels)
    warned = {str(w.message).split(":")[0] for w in caught if issubclass(w.category, SanityWarning)}
    assert warned == {finding.check for finding in findings}
    return warned


def test_a_clean_model_passes(linear_oracle) -> None:
    o = linear_oracle
    assert checks(o.model, o.inputs, o.labels) == set()


def test_masked_gradients_are_reported(linear_oracle) -> None:
    o = linear_oracle
    assert checks(Quantized(o.model).eval(), o.inputs, o.labels) == {"masked_gradients"}


def test_probabilities_are_reported(linear_oracle) -> None:
    o = linear_oracle
    assert checks(nn.Sequential(o.model, nn.Softmax(dim=1)).eval(), o.inputs, o.labels) == {"probabilities"}


def test_train_mode_and_randomness_are_reported(linear_oracle) -> None:
    o = linear_oracle
    assert checks(Noisy(o.model).eval(), o.inputs, o.labels) == {"non_deterministic"}
    train = nn.Sequential(o.model[0], o.model[1]).train()
    assert checks(train, o.inputs, o.labels) == {"train_mode"}
    assert not o.model.training


def test_non_finite_outputs_cannot_be_evaluated(linear_oracle) -> None:
    # A NaN row has no prediction (argmax 0): it would count as misclassified at distance 0, so it is refused.
    o = linear_oracle
    model = nn.Sequential(o.model, nn.Threshold(0.0, float("nan"))).eval()
    with pytest.raises(ValueError, match=r"^model must return finite logits, got NaN or inf for 8 of 8 inputs"):
        checks(model, o.inputs, o.labels)


def test_checks_leave_the_model_alone(linear_oracle) -> None:
    o = linear_oracle
    before = {k: v.clone() for k, v in o.model.state_dict().items()}
    checks(o.model, o.inputs, o.labels)
    assert not o.model.training
    assert all(p.grad is None for p in o.model.parameters())
    assert all(torch.equal(before[k], v) for k, v in o.model.state_dict().items())


def test_checks_of_a_model_in_train_mode_leave_its_batchnorm_statistics_alone(linear_oracle) -> None:
    # Before: the checks' forwards in train mode updated BatchNorm's running statistics, so the model
    # evaluated after them was not the one given.
    o = linear_oracle
    model = nn.Sequential(nn.BatchNorm2d(1), o.model).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert "train_mode" in checks(model, o.inputs, o.labels)
    assert model[0].training and int(before["0.num_batches_tracked"]) == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("inputs", "labels", "error", "match"),
    [
        (torch.full((2, 1, 8, 8), 1.5), torch.tensor([0, 1]), ValueError, r"inputs must be in \[0, 1\]"),
        (torch.rand(2, 1, 4, 4), torch.tensor([0, 1]), ValueError, r"inputs of shape \(2, 1, 4, 4\) do not fit"),
        (torch.rand(2, 1, 8, 8), torch.tensor([0, 7]), ValueError, r"labels must be in \[0, 1\]"),
        (torch.rand(2, 1, 8, 8), torch.tensor([0.0, 1.0]), TypeError, "labels must have dtype torch.int64"),
    ],
)
def test_inputs_that_cannot_be_evaluated_are_errors(linear_oracle, inputs, labels, error, match) -> None:
    with pytest.raises(error, match=match):
        check_evaluation(linear_oracle.model, inputs, labels)


def test_run_attack_checks_unless_told_not_to(linear_oracle) -> None:
    o = linear_oracle
    model = Quantized(o.model).eval()

    def identity(model, inputs, labels):
        return inputs.clone()

    with pytest.warns(SanityWarning, match="masked_gradients"):
        run_attack(model, o.inputs, o.labels, identity, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SanityWarning)
        run_attack(model, o.inputs, o.labels, identity, progress=False, checks=False)
