"""The sanity checks at their thresholds and what their messages report: the masked fraction (more than half),
the probability and determinism tolerances, the ``samples`` limit, and the counts named in each finding.

tests/eval/test_sanity.py shows that each check fires on a model that has the property everywhere; here the
property holds for some inputs only, or just inside / outside a tolerance."""

import warnings

import pytest
import torch
from torch import nn

from edgewise.eval.sanity import SanityWarning, check_evaluation

BATCH = 8


def base() -> nn.Module:
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -1.0, 0.5, 0.0], [-0.5, 1.0, 0.0, 1.0], [0.2, 0.3, -1.0, 0.4]]))
        layer.bias.copy_(torch.tensor([0.1, -0.2, 0.05]))
    return nn.Sequential(nn.Flatten(), layer).eval()


def data() -> tuple[torch.Tensor, torch.Tensor]:
    inputs = torch.rand(BATCH, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    return inputs, base()(inputs).argmax(1)


class Rows(nn.Module):
    """``base`` with a change applied to the inputs of the given rows of ``data()`` only (recognized by their
    values, wherever they are in a batch: the batch_dependent check splits it)."""

    def __init__(self, rows: list[int], change: str, scale: float = 0.0) -> None:
        super().__init__()
        self.model, self.change, self.scale = base(), change, scale
        self.marked = data()[0][rows].flatten(1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        chosen = (inputs.detach().flatten(1)[:, None] == self.marked[None]).all(2).any(1)
        if self.change == "masked":  # no gradient through the chosen rows
            inputs = torch.where(chosen.view(-1, 1, 1, 1), inputs.detach(), inputs)
        logits = self.model(inputs)
        if self.change == "noise":
            logits = logits + self.scale * torch.randn_like(logits) * chosen.unsqueeze(1)
        if self.change == "nan":
            logits = torch.where(chosen.unsqueeze(1), float("nan"), logits)
        if self.change == "nan_gradient":  # value unchanged, gradient sqrt'(0) = inf through the chosen rows
            zero = inputs.flatten(1)[:, :1] - inputs.flatten(1)[:, :1].detach()
            logits = logits + torch.where(chosen.unsqueeze(1), zero, 1.0).sqrt() * torch.tensor([1.0, 0.0, 0.0])
        return logits


class Scaled(nn.Module):
    """Probabilities whose rows sum to 1 + offset."""

    def __init__(self, offset: float, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.model, self.offset, self.dtype = base(), offset, dtype

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs).to(self.dtype).softmax(1) * (1 + self.offset)


class OneHot(nn.Module):
    """Rows of exact zeros and ones (a saturated softmax), differentiable through a zero-weight term."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hot = nn.functional.one_hot(base()(inputs).argmax(1), 3).to(inputs.dtype)
        return hot + 0 * inputs.flatten(1)[:, :1]


class Shifted(nn.Module):
    """Rows that sum to 1 but hold a negative entry: logits, not probabilities."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        rows = torch.tensor([[1.5, -0.5, 0.0]]).expand(len(inputs), 3)
        return rows + 0 * inputs.flatten(1)[:, :1]


def findings(model, samples: int = 64) -> dict[str, str]:
    inputs, labels = data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SanityWarning)
        return {f.check: f.message for f in check_evaluation(model, inputs, labels, samples=samples)}


def test_masked_gradients_need_more_than_half_of_the_inputs() -> None:
    assert findings(Rows([0, 1, 2, 3], "masked").eval()) == {}
    found = findings(Rows([0, 1, 2, 3, 6], "masked").eval())
    assert set(found) == {"masked_gradients"} and "for 5 of 8 inputs" in found["masked_gradients"]
    assert "try BPDA or a gradient-free attack (the 'auto' attack does both" in found["masked_gradients"]
    assert found["masked_gradients"].endswith("through a module that blocks the gradient, a decision-based search "
                                              "otherwise)")  # what auto does, in full
    assert findings(Rows([2, 5], "nan_gradient").eval()) == {}  # a non-finite gradient masks its row only
    assert "for 5 of 8" in findings(Rows([0, 2, 4, 5, 6], "nan_gradient").eval())["masked_gradients"]


def test_outputs_without_any_gradient_are_masked() -> None:
    constant = base()(data()[0]).detach()
    found = findings(lambda inputs: constant[:1].expand(len(inputs), -1))  # a plain callable, not a Module
    assert set(found) == {"masked_gradients"} and "no gradient at all" in found["masked_gradients"]
    layer = nn.Linear(4, 3)
    found = findings(lambda inputs: layer(torch.ones(len(inputs), 4)))  # depends on parameters, not on inputs
    assert set(found) == {"masked_gradients"} and "through autograd" in found["masked_gradients"]
    with pytest.raises(ValueError, match=r"^samples must be > 0, got 0$"):
        findings(base(), samples=0)
    with pytest.raises(TypeError, match=r"^samples must be an int, got float$"):
        findings(base(), samples=2.5)


def test_only_the_first_samples_are_checked() -> None:
    assert findings(Rows([4, 5, 6, 7], "masked").eval(), samples=4) == {}
    assert findings(Rows([4, 5, 6, 7], "nan").eval(), samples=4) == {}
    found = findings(Rows([0, 1, 2], "masked").eval(), samples=4)
    assert "for 3 of 4 inputs" in found["masked_gradients"]


def test_probabilities_within_the_tolerance_of_a_unit_sum() -> None:
    found = findings(Scaled(5e-4).eval())
    assert set(found) == {"probabilities"} and "remove the final softmax" in found["probabilities"]
    assert set(findings(Scaled(5e-4, torch.float64).eval())) == {"probabilities"}
    assert findings(Scaled(2e-3).eval()) == {}
    assert set(findings(OneHot().eval())) >= {"probabilities"}  # exact 0 and 1 are probabilities too
    assert "probabilities" not in findings(Shifted().eval())


def test_non_determinism_beyond_the_tolerance_and_its_count() -> None:
    assert findings(Rows([0, 1, 2], "noise", scale=1e-8).eval()) == {}
    found = findings(Rows([0, 1, 2], "noise", scale=1e-2).eval())
    assert set(found) == {"non_deterministic"}
    assert "differ for 3 of 8 inputs" in found["non_deterministic"]


def test_non_finite_outputs_are_counted() -> None:
    # Not a warning: clean inputs with NaN logits cannot be evaluated (a NaN row would be misclassified at 0).
    with pytest.raises(ValueError, match=r"^model must return finite logits, got NaN or inf for 2 of 8 inputs "
                                         r"\(batch rows 1, 5\)$"):
        findings(Rows([1, 5], "nan").eval())


def test_train_mode_names_at_most_three_modules() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Identity(), nn.Identity(), base()[1])
    found = findings(model.train())
    assert "5 module(s): Sequential, 0, 1, ...)" in found["train_mode"]
    found = findings(nn.Sequential(nn.Flatten(), nn.Identity(), base()[1]).train())
    assert "4 module(s): Sequential, 0, 1, ...)" in found["train_mode"]
    found = findings(nn.Sequential(nn.Flatten(), base()[1]).train())
    assert "3 module(s): Sequential, 0, 1)" in found["train_mode"]
    assert found["train_mode"].endswith("; call model.eval() before evaluating it")  # what to do about it
    model = nn.Sequential(nn.Flatten(), base()[1]).eval()
    model[1].train()
    assert "1 module(s): 1)" in findings(model)["train_mode"]


def test_every_tensor_follows_the_outputs_device() -> None:
    # With "meta" as the default device, a helper tensor made without device= meets the CPU outputs and fails,
    # as it would on a GPU: this runs the device check on a CPU-only machine.
    model = Scaled(5e-4).eval()
    inputs, labels = data()
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore", SanityWarning)
        assert {f.check for f in check_evaluation(model, inputs, labels)} == {"probabilities"}
