"""AttackBench's protocol as the benchmark runs it (``budgeted`` around edgewise's and other libraries' attacks):
which queried points may stand for a sample, what identifies an adapter's results, and what an adapter leaves
behind when the budget stops it."""

import importlib.metadata

import pytest
import torch
from torch import nn

from edgewise.cli import main
from edgewise.eval import baselines, run_attack
from edgewise.eval.baselines import BASELINES, load_baseline
from edgewise.eval.benchmark import benchmark, budgeted, resolve

from ..conftest import make_linear_oracle, require  # type: ignore[import-not-found]


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


def test_a_resumed_baseline_of_another_budget_is_refused(tmp_path) -> None:
    """A baseline adapter's steps are part of what produced a batch: a resume_dir of a 2-step run was handed back
    as the 50-step run's result (2 forwards per sample, distances of the 2-step run)."""
    require("adv_lib", "pip install --no-deps adv-lib==0.2.8")
    oracle = make_linear_oracle(batch=4, seed=1, classes=10)
    run_attack(oracle.model, oracle.inputs, oracle.labels, load_baseline("adv-lib:ddn", steps=2), resume_dir=tmp_path,
               progress=False, checks=False)
    with pytest.raises(ValueError, match=r"attack\.keywords\.steps=2, this run has attack\.keywords\.steps=50"):
        run_attack(oracle.model, oracle.inputs, oracle.labels, load_baseline("adv-lib:ddn", steps=50),
                   resume_dir=tmp_path, progress=False, checks=False)


def test_a_benchmark_cell_of_another_library_version_is_refused(tmp_path, monkeypatch) -> None:
    require("adv_lib", "pip install --no-deps adv-lib==0.2.8")
    oracle = make_linear_oracle(batch=4, seed=1, classes=10)
    attacks = [resolve("adv-lib:ddn", distance="l2")]
    models, data = {"m": oracle.model}, {"m": (oracle.inputs, oracle.labels)}
    installed = importlib.metadata.version("adv-lib")
    benchmark(models, data, attacks, [2], distance="l2", out=tmp_path, budget=4, batch_size=4)
    monkeypatch.setattr(baselines, "installed_version", lambda library: "0.0.1")
    with pytest.raises(ValueError, match=f"version={installed!r}, this run has .*version='0.0.1'"):
        benchmark(models, data, attacks, [2], distance="l2", out=tmp_path, budget=4, batch_size=4)


@pytest.mark.parametrize("name", ["foolbox:ddn", "torchattacks:cw-l2"])
def test_a_baseline_stopped_by_the_budget_leaves_the_parameters_gradients_alone(name: str) -> None:
    """foolbox (eagerpy) and torchattacks call loss.backward(), which fills the parameters' .grad; the adapter undid
    it only when the attack returned, not when the budget stopped it (BudgetSpentError)."""
    require(BASELINES[name].library, "docs/install.md says how")
    oracle = make_linear_oracle(batch=4, seed=1, classes=10)
    attack = budgeted(load_baseline(name, steps=50), budget=6, distance="l2")
    result = run_attack(oracle.model, oracle.inputs, oracle.labels, attack, progress=False, checks=False)
    assert (result.forwards + result.backwards <= 6 + 1).all()  # + BudgetModel's clean forward
    assert all(parameter.grad is None for parameter in oracle.model.parameters())


def test_an_attack_of_a_fixed_distance_is_refused_for_another(capsys) -> None:
    """DDN minimizes ℓ2: `--distance linf --attack ddn` ran it and scored its ℓ∞ as an ℓ∞ attack's (in the best of
    all, LO and GO), where `adv-lib:ddn` was refused."""
    assert resolve("ddn", distance="l2").name == "ddn"
    with pytest.raises(ValueError, match="attack 'ddn' minimizes 'l2' but --distance is 'linf'"):
        resolve("ddn", distance="linf")
    assert main(["benchmark", "--distance", "l1", "--attack", "ddn", "--no-progress"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "attack 'ddn' minimizes 'l2' but --distance is 'l1'" in errors[0]
