import json
import math
import statistics
import sys
from functools import partial

import pytest
import torch

from edgewise.attacks import ddn, fmn
from edgewise.attacks.auto import auto_steps
from edgewise.cli import main
from edgewise.eval import metrics, run_attack
from edgewise.eval.benchmark import AttackSpec, benchmark, geometric_mean, resolve, write_report
from edgewise.losses import logit_margin

from ..conftest import make_linear_oracle  # type: ignore[import-not-found]


@pytest.fixture(scope="module")
def oracles():
    return {"linear-a": make_linear_oracle(batch=12, seed=1), "linear-b": make_linear_oracle(batch=12, seed=2)}


def closed_form(model, inputs, labels):
    """The exact minimal ℓ2 adversarial of a linear model, a hair past the boundary: x − (1 + 1e-4) m ∇m / ‖∇m‖²
    with m the logit margin (one linearization is exact): the best attack on the oracles."""
    x = inputs.clone().requires_grad_(True)
    margin = logit_margin(model(x), labels)
    (grad,) = torch.autograd.grad(margin.sum(), x)
    step = (margin / grad.flatten(1).square().sum(1)).detach().view(-1, 1, 1, 1)
    return (inputs - (1 + 1e-4) * step * grad).clamp(0, 1)


def specs(calls: dict[str, int] | None = None, fail_on: int | None = None) -> list[AttackSpec]:
    """ddn, fmn and the closed form; ``calls`` counts the batches each attack runs; the fmn attack raises on
    its ``fail_on``-th batch (to interrupt a benchmark mid-way)."""
    def counted(name, function):
        def run(model, inputs, labels):
            calls[name] = calls.get(name, 0) + 1
            if name == "fmn" and fail_on is not None and calls[name] == fail_on:
                raise RuntimeError("interrupted")
            return function(model, inputs, labels)
        return run if calls is not None else function

    return [
        AttackSpec("ddn", lambda steps: counted("ddn", partial(ddn, steps=steps, levels=None))),
        AttackSpec("fmn", lambda steps: counted("fmn", partial(fmn, steps=steps))),
        AttackSpec("exact", lambda steps: counted("exact", closed_form)),
    ]


def run(oracles, out, calls=None, fail_on=None):
    models = {name: o.model for name, o in oracles.items()}
    data = {name: (o.inputs, o.labels) for name, o in oracles.items()}
    return benchmark(models, data, specs(calls, fail_on), [3, 10], distance="l2", out=out, batch_size=5)


def numbers(report):
    return {m: [{k: v for k, v in r.items() if k != "seconds" and k != "ms_per_sample_iteration"}
                for r in e["rows"]] for m, e in report["models"].items()}


def test_cells_agree_with_run_attack_alone(oracles, tmp_path) -> None:
    report = run(oracles, tmp_path)
    o = oracles["linear-b"]
    alone = run_attack(o.model, o.inputs, o.labels, partial(ddn, steps=10, levels=None), batch_size=5,
                       progress=False).summary(distance="l2")
    row = next(r for r in report["models"]["linear-b"]["rows"] if r["attack"] == "ddn" and r["steps"] == 10)
    assert row["median_distance"] == alone["median_distance"] and row["success_rate"] == alone["success_rate"]
    assert row["forwards_per_sample"] == 10 and row["backwards_per_sample"] == 10


def test_best_of_all_optimality_and_geometric_mean(oracles, tmp_path) -> None:
    report = run(oracles, tmp_path)
    for name, entry in report["models"].items():
        rows = {(r["attack"], r["steps"]): r for r in entry["rows"]}
        # The closed form is the per-sample optimum: the best of all equals it and its optimality is 1.
        assert rows[("exact", 3)]["optimality"] == pytest.approx(1.0, rel=1e-3)
        assert entry["best_median_distance"] == pytest.approx(rows[("exact", 3)]["median_distance"], rel=1e-3)
        assert entry["best_median_distance"] == pytest.approx(float(oracles[name].l2.double().median()), rel=1e-3)
        assert rows[("ddn", 3)]["optimality"] < 0.99  # 3 DDN steps are far from the optimum
        assert all(r["optimality"] <= 1 + 1e-9 for r in entry["rows"])
    for summary in report["summary"]:
        medians = [next(r for r in e["rows"] if (r["attack"], r["steps"]) == (summary["attack"], summary["steps"]))
                   ["median_distance"] for e in report["models"].values()]
        expected = statistics.geometric_mean(medians) if all(map(math.isfinite, medians)) else None
        assert summary["geometric_mean_median_distance"] == pytest.approx(expected)


def test_paired_comparison_with_another_library(oracles, tmp_path) -> None:
    """A "library" attack that returns the closed form pushed 1.25 times as far: edgewise's counterpart (the
    closed form itself) has ratio 1 / 1.25 on every sample, per model and pooled."""
    def farther(model, inputs, labels):
        return inputs + 1.25 * (closed_form(model, inputs, labels) - inputs)

    models = {name: o.model for name, o in oracles.items()}
    data = {name: (o.inputs, o.labels) for name, o in oracles.items()}
    attacks = [*specs(), AttackSpec("lib:exact", lambda steps: farther)]
    report = benchmark(models, data, attacks, [3], distance="l2", out=tmp_path, batch_size=5)
    for entry in [*(e["paired"] for e in report["models"].values()), report["paired"]]:
        assert [(r["attack"], r["baseline"], r["steps"]) for r in entry] == [("exact", "lib:exact", 3)]
        assert entry[0]["geometric_mean_ratio"] == pytest.approx(0.8, rel=1e-4)
        assert entry[0]["ci95_low"] <= 0.8 * (1 + 1e-4) and entry[0]["ci95_high"] >= 0.8 * (1 - 1e-4)
        assert entry[0]["smaller"] == 1.0 and entry[0]["larger"] == 0.0
    assert report["paired"][0]["pairs"] == sum(e["paired"][0]["pairs"] for e in report["models"].values())
    env = {"torch": torch.__version__, "device": "cpu", "threads": 1, "git_commit": None}
    write_report(report, tmp_path, arguments={"n": 12, "data": "oracle"}, env=env)
    text = (tmp_path / "report.md").read_text()
    lines = text.splitlines()
    assert lines[:4] == ["# edgewise benchmark (l2)", "", f"n = 12 samples (oracle), models linear-a, linear-b; torch "
                         f"{torch.__version__}, cpu, 1 thread(s), commit None", ""]  # the header, its own paragraph
    # the pooled comparison and each model's, every model's section after the summary
    assert text.count("| exact | lib:exact | 3 |") == 3
    assert text.index("## Geometric mean") < text.index("## linear-a") < text.index("## linear-b")


def test_paired_ratio_against_a_hand_computation() -> None:
    mine = torch.tensor([1.0, 2.0, 4.0, math.inf, 0.0, 3.0])
    theirs = torch.tensor([2.0, 2.0, 2.0, 1.0, 0.0, math.inf])
    stats = metrics.paired_ratio(mine, theirs)  # pairs: the first three (failures and clean errors left out)
    logs = [math.log(0.5), 0.0, math.log(2.0)]
    half = 1.96 * statistics.stdev(logs) / math.sqrt(3)
    assert stats == pytest.approx({"pairs": 3, "geometric_mean_ratio": 1.0, "ci95_low": math.exp(-half),
                                   "ci95_high": math.exp(half), "smaller": 1 / 3, "larger": 1 / 3})
    assert metrics.paired_ratio(mine[3:], theirs[3:]) is None


def test_geometric_mean() -> None:
    assert geometric_mean([1.0, 4.0]) == pytest.approx(2.0)
    assert geometric_mean([1.0, math.inf]) is None
    assert geometric_mean([0.0, 4.0]) == 0.0


def test_interrupted_benchmark_resumes_without_redoing_finished_work(oracles, tmp_path) -> None:
    calls: dict[str, int] = {}
    with pytest.raises(RuntimeError, match="interrupted"):  # fmn fails on its 5th batch: cell (linear-a, 10)
        run(oracles, tmp_path / "resumed", calls, fail_on=5)
    assert calls == {"ddn": 6, "fmn": 5}  # ddn: 2 cells × 3 batches; fmn: 3 batches + 1 of its second cell
    calls.clear()
    resumed = run(oracles, tmp_path / "resumed", calls)
    # linear-a: ddn's cells and fmn's first cell are loaded, fmn's second resumes after its first batch.
    assert calls == {"fmn": 2 + 6, "exact": 3 * 2 + 3 * 2, "ddn": 6}
    calls.clear()
    again = run(oracles, tmp_path / "resumed", calls)
    assert calls == {}
    fresh = run(oracles, tmp_path / "fresh")
    assert numbers(resumed) == numbers(again) == numbers(fresh)


def test_report_files(oracles, tmp_path) -> None:
    report = run(oracles, tmp_path)
    env = {"torch": torch.__version__, "device": "cpu", "threads": 1, "git_commit": None}
    written = write_report(report, tmp_path, arguments={"n": 12, "data": "oracle"}, env=env)
    assert {p.name for p in written} == {"report.md", "report.json", "robust_accuracy-linear-a.png",
                                        "robust_accuracy-linear-b.png"}
    numbers_json = json.loads((tmp_path / "report.json").read_text())
    assert numbers_json["models"]["linear-a"]["rows"][0]["attack"] == "ddn"
    assert (tmp_path / "robust_accuracy-linear-a.png").read_bytes()[:4] == b"\x89PNG"
    assert "| exact | 3 | 100.00 |" in (tmp_path / "report.md").read_text()


def test_attack_names() -> None:
    assert resolve("fmn-l1", distance="l1").build(5).keywords == {"steps": 5, "norm": "l1"}
    assert resolve("fmn", distance="l2").build(5).keywords == {"steps": 5, "norm": "l2"}
    with pytest.raises(ValueError, match="attack 'nosuch-l2' is not in the registry"):
        resolve("nosuch-l2", distance="l2")
    with pytest.raises(ValueError, match="minimizes 'l1' but --distance is 'l2'"):
        resolve("fmn-l1", distance="l2")
    with pytest.raises(ValueError, match="'ddn' minimizes a fixed distance"):
        resolve("ddn-l1", distance="l2")


def test_cw_budget_is_search_rounds_times_steps() -> None:
    spec = resolve("cw-l2", distance="l2")
    assert spec.build(5).keywords == {"steps": 5, "distance": "l2"}
    assert spec.budget(100) == "9×100" and spec.iterations(100) == 900
    assert resolve("alma-l2", distance="l2").iterations(100) == 100


def test_a_search_shares_the_budget_among_its_rounds(oracles, tmp_path) -> None:
    """Under a budget of 2 × 40 passes, the ε search of apgd_minimal (10 rounds) runs 10 rounds of 4 steps, not one
    round of 40: every round is seen, and the budget is not exceeded."""
    oracle = oracles["linear-a"]
    spec = resolve("apgd_minimal-l2", distance="l2")
    assert spec.rounds == 10 and spec.within(40) == 4 and spec.within(5) == 1
    rounds: list[int] = []
    counted = AttackSpec(spec.name, lambda steps: partial(spec.build(steps), callback=lambda r, _: rounds.append(r)),
                         spec.rounds)
    report = benchmark({"linear-a": oracle.model}, {"linear-a": (oracle.inputs, oracle.labels)}, [counted], [40],
                       distance="l2", out=tmp_path, budget=80, batch_size=12)
    row = report["models"]["linear-a"]["rows"][0]
    assert rounds == list(range(10)) and row["budget"] == "10×4"
    assert row["forwards_per_sample"] + row["backwards_per_sample"] <= 80 + 1
    assert resolve("foolbox:cw-l2", distance="l2").within(500) == 55


def test_auto_spends_twice_the_steps_as_its_budget(oracles, tmp_path) -> None:
    spec = resolve("auto", distance="l1")
    assert spec.build(15).func is auto_steps and spec.build(15).keywords == {"steps": 15, "norm": "l1"}
    assert spec.budget(15) == "15"
    report = benchmark({"linear-a": oracles["linear-a"].model},
                       {"linear-a": (oracles["linear-a"].inputs, oracles["linear-a"].labels)},
                       [resolve("auto", distance="l2")], [15], distance="l2", out=tmp_path, budget=30,
                       batch_size=6)
    row = report["models"]["linear-a"]["rows"][0]
    assert row["success_rate"] > 0.5 and row["forwards_per_sample"] + row["backwards_per_sample"] <= 30


def test_cli_bad_names_are_one_line_exit_2(capsys) -> None:
    assert main(["benchmark", "--model", "nosuch-fmnist", "--attack", "ddn"]) == 2
    assert main(["benchmark", "--attack", "nosuch-l2"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "--model 'nosuch-fmnist' is neither a zoo model" in errors[0]
    assert "attack 'nosuch-l2' is not in the registry" in errors[1]


def test_cli_end_to_end_skips_a_missing_library(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "foolbox", None)
    args = ["benchmark", "--model", "smallcnn-fmnist", "--attack", "ddn,foolbox:ddn", "--steps", "2",
            "--n", "6", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.err.count("skipping foolbox:ddn: foolbox is not installed") == 1
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["attack"] for r in report["models"]["smallcnn-fmnist"]["rows"]] == ["ddn"]
    assert main(args) == 0
    assert "ddn 2: loaded" in capsys.readouterr().out


def test_budget_protocol_local_and_global_optimality(oracles, tmp_path) -> None:
    """Under a budget of 20 passes per sample, FMN's 30 steps are cut to 10 (one forward + one backward each) and
    the closed form (which queries its answer once) is the reference: LO 1 on every model, GO 1; the cut FMN
    misses samples and scores between 0 and 1."""
    def exact_queried(model, inputs, labels):
        adversarial = closed_form(model, inputs, labels)
        model(adversarial)
        return adversarial

    models = {name: o.model for name, o in oracles.items()}
    data = {name: (o.inputs, o.labels) for name, o in oracles.items()}
    attacks = [AttackSpec("fmn", lambda steps: partial(fmn, steps=steps)),
               AttackSpec("exact", lambda steps: exact_queried)]
    report = benchmark(models, data, attacks, [30], distance="l2", out=tmp_path, budget=20, batch_size=5)
    for name, entry in report["models"].items():
        rows = {r["attack"]: r for r in entry["rows"]}
        assert rows["exact"]["local_optimality"] == pytest.approx(1.0, abs=1e-3)  # FMN lands 1e-4 nearer
        assert 0 < rows["fmn"]["local_optimality"] < 1
        assert rows["fmn"]["forwards_per_sample"] + rows["fmn"]["backwards_per_sample"] <= 20 + 1
        assert entry["eps0"] == pytest.approx(float(oracles[name].l2.max()), rel=1e-3)
    fmn_lo = [next(r for r in e["rows"] if r["attack"] == "fmn")["local_optimality"]
              for e in report["models"].values()]
    go = {r["attack"]: r["global_optimality"] for r in report["summary"]}
    assert go == pytest.approx({"exact": 1.0, "fmn": sum(fmn_lo) / len(fmn_lo)}, abs=1e-3)
    assert (tmp_path / "cells" / "linear-a" / "fmn" / "budget-20-steps-30").is_dir()
    env = {"torch": torch.__version__, "device": "cpu", "threads": 1, "git_commit": None}
    write_report(report, tmp_path, arguments={"n": 12, "data": "oracle"}, env=env)
    text = (tmp_path / "report.md").read_text()
    assert "20 forward + backward passes per sample" in text and "| GO |" in text and "| LO |" in text
    with pytest.raises(ValueError, match="budget"):
        benchmark(models, data, attacks, [10], distance="l2", out=tmp_path, budget=0)


def test_cli_budget_sets_the_steps_and_is_recorded(tmp_path, capsys) -> None:
    assert main(["benchmark", "--budget", "1", "--out", str(tmp_path)]) == 2
    assert "--budget must be >= 2" in capsys.readouterr().err
    args = ["benchmark", "--attack", "ddn", "--budget", "6", "--n", "4", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    row = report["models"]["smallcnn-fmnist"]["rows"][0]
    assert report["budget"] == 6 and row["steps"] == 3 and row["forwards_per_sample"] <= 3 + 1
    assert "local_optimality" in row and "global_optimality" in report["summary"][0]


def test_a_cell_of_another_run_is_refused_naming_the_field(oracles, tmp_path) -> None:
    o = oracles["linear-a"]
    first = [AttackSpec("ddn", lambda steps: partial(ddn, steps=steps, levels=None))]
    benchmark({"m": o.model}, {"m": (o.inputs, o.labels)}, first, [2], distance="l2", out=tmp_path, batch_size=6)
    other = [AttackSpec("ddn", lambda steps: partial(ddn, steps=steps, levels=256))]
    with pytest.raises(ValueError, match=r"benchmark cell .* was written by a run with attack\.keywords\.levels=None"):
        benchmark({"m": o.model}, {"m": (o.inputs, o.labels)}, other, [2], distance="l2", out=tmp_path,
                  batch_size=6)
    # Other samples in the same folder are computed for them, never handed the first run's figures.
    half = (o.inputs[:3], o.labels[:3])
    reused = benchmark({"m": o.model}, {"m": half}, first, [2], distance="l2", out=tmp_path, batch_size=6)
    fresh = benchmark({"m": o.model}, {"m": half}, first, [2], distance="l2", out=tmp_path / "fresh", batch_size=6)
    ours, theirs = reused["models"]["m"]["rows"][0], fresh["models"]["m"]["rows"][0]
    assert ours["n"] == 3
    assert [ours[k] for k in ("median_distance", "mean_distance", "success_rate")] == [
        theirs[k] for k in ("median_distance", "mean_distance", "success_rate")]


def test_a_budgeted_attack_refuses_a_model_in_train_mode_before_its_clean_forward() -> None:
    """BudgetModel's clean forward in train mode updated the caller's BatchNorm statistics before the attack
    refused the model."""
    from edgewise.eval.benchmark import budgeted

    o = make_linear_oracle()
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(1), o.model).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"model must be in eval mode"):
        budgeted(partial(ddn, steps=2), budget=4, distance="l2")(model, o.inputs, o.labels)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
