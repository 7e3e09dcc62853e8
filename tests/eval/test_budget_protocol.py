"""AttackBench's protocol as the benchmark runs it (``budgeted``): which queried points may stand for a sample."""

import torch
from torch import nn

from edgewise.eval import run_attack
from edgewise.eval.benchmark import budgeted

from ..conftest import make_linear_oracle  # type: ignore[import-not-found]


class NaNOffPixel(nn.Module):
    """``model``, with NaN logits wherever pixel ``pixel`` is more than 0.005 away from 0.5."""

    def __init__(self, model: nn.Module, pixel: int) -> None:
        super().__init__()
        self.model, self.pixel = model, pixel

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        logits = self.model(inputs)
        moved = (inputs.flatten(1)[:, self.pixel] - 0.5).abs() > 0.005
        return torch.where(moved.unsqueeze(1), torch.full_like(logits, float("nan")), logits)


def test_a_query_with_nan_logits_is_not_the_best_point() -> None:
    """A query whose logits are NaN has no prediction: it must not displace an adversarial queried after it, even
    when it lies nearer (argmax of a NaN row is an arbitrary class, "adversarial" for some labels)."""
    oracle = make_linear_oracle(batch=4, seed=1, classes=3)
    weight = oracle.model[1].weight[1].detach().double()
    pixel = int(weight.abs().argmin())  # the optimal direction barely moves it: the true adversarial stays finite
    inputs = oracle.inputs.clone()
    inputs.view(len(inputs), -1)[:, pixel] = 0.5
    margin = inputs.flatten(1).double() @ weight  # logit 1 − logit 0; the minimal ℓ2 move is |margin| / ‖w‖
    labels = (margin > 0).long()
    away = -margin.sign().view(-1, 1) * weight / weight.norm()
    optimal = margin.abs() / weight.norm()
    genuine = (inputs.flatten(1).double() + 1.5 * optimal.view(-1, 1) * away).float().view_as(inputs)
    model = NaNOffPixel(oracle.model, pixel).eval()

    def attack(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        undefined = inputs.clone()
        undefined.view(len(inputs), -1)[:, pixel] += 0.01  # l2 0.01, nearer than every adversarial
        with torch.no_grad():
            assert torch.isnan(model(undefined)).all()
            model(genuine)
        return genuine

    assert bool((optimal > 0.02).all())
    result = run_attack(model, inputs, labels, budgeted(attack, budget=10, distance="l2"), progress=False,
                        checks=False)
    assert result.success.all() and result.verified.all()
    torch.testing.assert_close(result.distances["l2"].double(), 1.5 * optimal, rtol=1e-4, atol=1e-6)
