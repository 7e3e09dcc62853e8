"""edgewise.exact.run: a folder of solved samples is reused only by a run that would compute the same results."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from edgewise.eval import provenance
from edgewise.exact import run

pytest.importorskip("pyscipopt")
pytest.importorskip("highspy")


def test_samples_solved_by_other_code_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # run_attack's folders and the CLI's --out record the source digest; run_exact's did not, and a sample solved
    # by other (e.g. fixed) code of edgewise.exact was handed back as this code's result.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3)).eval()
    inputs = torch.rand(1, 3)
    labels = model(inputs).argmax(1)
    run.run_exact(model, inputs, labels, norm="linf", time_limit=5, folder=tmp_path, progress=False)
    other = {**provenance.edgewise_identity(), "source": "0" * 64}
    monkeypatch.setattr(run, "edgewise_identity", lambda: other)
    with pytest.raises(ValueError, match=r"edgewise\.source"):
        run.run_exact(model, inputs, labels, norm="linf", time_limit=5, folder=tmp_path, progress=False)
