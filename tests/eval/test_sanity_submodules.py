"""The train-mode check looks at every submodule: a top-level model in eval mode can hide one in train mode.

tests/eval/test_sanity.py puts the whole model in train mode, so a check of ``model.training`` alone would pass
it; here only an inner layer is in train mode (what ``model.eval()`` followed by ``model.head.train()``, or a
wrapper around a model in train mode, leaves).
"""

import warnings

import torch
from torch import nn

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
