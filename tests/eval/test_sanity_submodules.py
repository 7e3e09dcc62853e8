"""The train-mode check looks at every submodule: a top-level model in eval mode can hide one in train mode.

tests/eval/test_sanity.py puts the whole model in train mode, so a check of ``model.training`` alone would pass
it; here only an inner layer is in train mode (what ``model.eval()`` followed by ``model.head.train()``, or a
wrapper around a model in train mode, leaves).
"""

import warnings

import torch
from torch import nn

from edgewise import models
from edgewise.eval.sanity import SanityWarning, check_evaluation


def _findings(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SanityWarning)
        return {finding.check: finding.message for finding in check_evaluation(model, inputs, labels)}


def test_a_submodule_in_train_mode_is_found(linear_oracle) -> None:
    o = linear_oracle
    inner = nn.Sequential(o.model[0], o.model[1])
    model = nn.Sequential(nn.Identity(), inner).eval()
    assert _findings(model, o.inputs, o.labels) == {}
    inner[1].train()  # a deterministic layer in train mode: only the mode check can see it
    assert not model.training and not inner.training
    findings = _findings(model, o.inputs, o.labels)
    assert set(findings) == {"train_mode"}
    assert "1 module(s): 1.1" in findings["train_mode"]
    assert not model.training and inner[1].training  # reported, not changed


class BatchNormed(nn.Module):
    """A linear model after a BatchNorm of its input features."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(features)
        self.linear = nn.Linear(features, classes)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(inputs.flatten(1)))


def test_an_export_saved_in_train_mode_is_batch_dependent(tmp_path, linear_oracle) -> None:
    # A torch.export program fixes its mode at export: its module reports eval mode, so the train_mode check
    # cannot see that BatchNorm normalizes with each batch's statistics. Splitting the batch shows it.
    o = linear_oracle
    torch.manual_seed(0)
    net = BatchNormed(o.inputs[0].numel(), int(o.labels.max()) + 1)
    example, batch = (o.inputs[:4],), {"inputs": {0: torch.export.Dim("batch", min=2)}}
    torch.export.save(torch.export.export(net.train(), example, dynamic_shapes=batch), tmp_path / "train.pt2")
    torch.export.save(torch.export.export(net.eval(), example, dynamic_shapes=batch), tmp_path / "eval.pt2")
    trained, evaluated = models.load(str(tmp_path / "train.pt2")), models.load(str(tmp_path / "eval.pt2"))
    assert not trained.training
    assert _findings(evaluated, o.inputs, o.labels) == {}
    found = _findings(trained, o.inputs, o.labels)
    assert set(found) == {"batch_dependent"}
    assert f"of {len(o.inputs)} inputs change when their batch is split in two" in found["batch_dependent"]


def test_float_rounding_of_another_batch_size_is_not_batch_dependence(linear_oracle) -> None:
    # Logits that differ between batch sizes by float rounding only (well under BATCH_TOLERANCE of their scale).
    o = linear_oracle

    class Rounded(nn.Module):
        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            logits = o.model(inputs)
            return logits + 1e-4 * len(inputs) * logits.abs().max()

    assert _findings(Rounded().eval(), o.inputs, o.labels) == {}
