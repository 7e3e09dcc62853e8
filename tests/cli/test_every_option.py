"""Every option of every subcommand, at a non-default value on a tiny input, shows up in what it configures: the
attack's call (recorded by a wrapper with the attack's signature), the results' arguments and provenance, and
the report. The option tables must cover each parser's options, so a new option needs a check here."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from edgewise.attacks import ATTACKS
from edgewise.cli import benchmark as benchmark_cli
from edgewise.cli import build_parser, main
from edgewise.cli import exact as exact_cli
from edgewise.cli import minmax as minmax_cli
from edgewise.data import sample
from edgewise.data.idx import write_idx
from edgewise.eval.trace import Trace

MODEL_PY = """
from torch import nn


def build(side=12, hidden=8, num_classes=3):
    return nn.Sequential(nn.Flatten(), nn.Linear(side * side, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A .py model with its weights (side 12, hidden 5, 10 classes) and an IDX folder with both splits."""
    root = tmp_path_factory.mktemp("every-option")
    (root / "net.py").write_text(MODEL_PY)
    namespace: dict[str, Any] = {}
    exec(MODEL_PY, namespace)
    torch.manual_seed(0)
    torch.save(namespace["build"](side=12, hidden=5, num_classes=10).state_dict(), root / "net.pt")
    inputs, labels = sample()
    images = (inputs[:40, 0] * 255).round().to(torch.uint8)
    for prefix in ("train", "t10k"):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels[:40].to(torch.uint8))
    return {"model": f"{root / 'net.py'}:build", "weights": str(root / "net.pt"), "idx": str(root)}


def recording(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, store: list[dict[str, Any]]) -> None:
    """Replace ``owner.name`` (a function or a dict entry) by a wrapper with its signature recording each call."""
    real = owner[name] if isinstance(owner, dict) else getattr(owner, name)

    @functools.wraps(real)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        store.append({"args": args, **kwargs})
        return real(*args, **kwargs)

    if isinstance(owner, dict):
        monkeypatch.setitem(owner, name, wrapper)
    else:
        monkeypatch.setattr(owner, name, wrapper)


def options_of(command: str) -> set[str]:
    parser = build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    return {action.option_strings[0] for action in parser._actions if action.option_strings} - {"-h"}


def spec_options(files: dict[str, str]) -> list[str]:
    return ["--model", files["model"], "--weights", files["weights"], "--model-args", '{"hidden": 5}',
            "--num-classes", "10", "--mean", "0.3", "--std", "0.4", "--data", files["idx"], "--split", "train",
            "--resize", "14", "--center-crop", "12"]


def check_spec_provenance(record: dict[str, Any], files: dict[str, str]) -> None:
    model = record["model"] if "model" in record else next(iter(record["models"].values()))
    assert model["spec"] == files["model"] and model["kind"] == "python"
    assert model["model_args"] == {"hidden": 5} and model["num_classes"] == 10
    assert model["mean"] == [0.3] and model["std"] == [0.4] and files["weights"] in model["files"]
    data = record["data"]
    assert (data["spec"], data["split"], data["resize"], data["center_crop"]) == (files["idx"], "train", 14, 12)
    assert data["shape"] == [1, 12, 12]


def test_attack_every_option(files: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    recording(monkeypatch, ATTACKS, "alma", calls)
    out = tmp_path / "attack"
    argv = ["attack", *spec_options(files), "--attack", "alma", "--steps", "3", "--distance", "l1",
            "--attack-options", '{"alpha": 0.7}', "--targeted", "--levels", "256", "--eps", "0.5,1", "--n", "3",
            "--offset", "2", "--batch-size", "2", "--seed", "5", "--device", "cpu:0", "--out", str(out),
            "--no-progress", "--trace", "--no-checks"]
    given = {a for a in argv if a.startswith("--")}
    assert given | {"--indices"} == options_of("attack")  # --indices: the next test (it excludes --n/--offset)
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    arguments, summary, provenance = results["arguments"], results["summary"], results["provenance"]
    assert (arguments["steps"], arguments["distance"], arguments["levels"], arguments["eps"]) == (3, "l1", 256,
                                                                                                  [0.5, 1.0])
    check_spec_provenance(provenance, files)
    assert provenance["seed"] == 5 and provenance["levels"] == 256 and provenance["batch_size"] == 2
    assert provenance["targeted"] is True and provenance["distance"] == "l1"
    assert results["environment"]["device"] == "cpu:0"
    assert summary["distance"] == "l1" and set(summary["robust_accuracy"]) == {"0.5", "1.0"}
    assert summary["sanity"] is None  # --no-checks
    assert [json.loads(line)["index"] for line in (out / "samples.jsonl").read_text().splitlines()] == [2, 3, 4]
    assert (out / "trace.json").is_file()
    assert [len(call["args"][1]) for call in calls] == [2, 1]  # --batch-size 2 over --n 3
    for call in calls:
        assert call["steps"] == 3 and call["distance"] == "l1" and call["alpha"] == 0.7
        assert call["targeted"] is True and isinstance(call["callback"], Trace)
        assert call["args"][1].shape[1:] == (1, 12, 12)
    labels = sample()[1]  # the IDX files hold the sample's first 40 images
    assert calls[0]["args"][2].tolist() == ((labels[2:4] + 1) % 10).tolist()  # --targeted: (y + 1) mod classes
    assert calls[0]["generator"].initial_seed() == 5 * 1_000_003 + 2  # --seed, the batch's first index (--offset)


def test_attack_indices(files: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "indices"
    assert main(["attack", "--steps", "2", "--indices", "7,3", "--out", str(out), "--no-progress"]) == 0
    assert [json.loads(line)["index"] for line in (out / "samples.jsonl").read_text().splitlines()] == [7, 3]


def test_benchmark_every_option(files: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[dict[str, Any]] = []
    recording(monkeypatch, ATTACKS, "fmn", calls)
    asked: list[dict[str, Any]] = []
    recording(monkeypatch, benchmark_cli, "attack_specs", asked)
    out = tmp_path / "bench"
    argv = ["benchmark", *spec_options(files), "--attack", "fmn-linf", "--baselines", "--distance", "linf",
            "--steps", "2,3", "--budget", "6", "--n", "3", "--offset", "1", "--batch-size", "2", "--seed", "4",
            "--device", "cpu:0", "--out", str(out), "--no-progress", "--exact", "--exact-time-limit", "5"]
    assert {a for a in argv if a.startswith("--")} | {"--indices"} == options_of("benchmark")
    monkeypatch.setattr(benchmark_cli, "BASELINES", {})  # --baselines reaches attack_specs; none is run here
    certified: list[Any] = []  # --exact reaches exact_reports (the solver itself is tested in tests/exact)
    monkeypatch.setattr(benchmark_cli, "exact_reports", lambda *args: certified.append(args) or [])
    assert main(argv) == 0
    assert len(certified) == 1 and certified[0][5].exact_time_limit == 5.0
    printed = capsys.readouterr().out.splitlines()  # what was evaluated, first
    assert printed[0].startswith(f"model   {files['model']} (python") and "mean [0.3] std [0.4]" in printed[0]
    assert printed[1].startswith(f"data    {files['idx']} (split train, input 1x12x12, 10 classes")
    assert asked[0]["baselines"] is True and asked[0]["distance"] == "linf"
    report = json.loads((out / "report.json").read_text())
    check_spec_provenance(report["arguments"]["provenance"], files)
    provenance = report["arguments"]["provenance"]
    assert (provenance["seed"], provenance["batch_size"], provenance["distance"]) == (4, 2, "linf")
    assert provenance["budget"] == 6 and report["budget"] == 6
    assert report["environment"]["device"] == "cpu:0"
    rows = next(iter(report["models"].values()))["rows"]
    assert sorted(row["steps"] for row in rows) == [2, 3] and all(row["n"] == 3 for row in rows)
    assert sorted({call["steps"] for call in calls}) == [2, 3]
    assert all(call["norm"] == "linf" and len(call["args"][1]) <= 2 for call in calls)


def test_exact_every_option(files: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pyscipopt")
    calls: list[dict[str, Any]] = []
    recording(monkeypatch, ATTACKS, "fmn", calls)
    solved: list[dict[str, Any]] = []
    recording(monkeypatch, exact_cli, "certify_against", solved)
    out = tmp_path / "exact"
    argv = ["exact", *spec_options(files), "--attack", "fmn-linf", "--distance", "linf", "--steps", "3",
            "--time-limit", "3", "--gap", "0.01", "--n", "3", "--offset", "1", "--batch-size", "2", "--seed", "4",
            "--device", "cpu:0", "--out", str(out), "--no-progress"]
    assert {a for a in argv if a.startswith("--")} | {"--indices"} == options_of("exact")
    assert main(argv) == 0
    printed = capsys.readouterr().out.splitlines()  # what was evaluated, first
    assert printed[0].startswith(f"model   {files['model']} (python") and "mean [0.3] std [0.4]" in printed[0]
    assert printed[1].startswith(f"data    {files['idx']} (split train, input 1x12x12, 10 classes")
    results = json.loads((out / "results.json").read_text())
    provenance = results["provenance"]
    check_spec_provenance(provenance, files)
    assert (provenance["seed"], provenance["batch_size"], provenance["distance"]) == (4, 2, "linf")
    assert (provenance["time_limit"], provenance["gap"]) == (3.0, 0.01) and set(provenance["attacks"]) == {"fmn-linf"}
    assert results["environment"]["device"] == "cpu:0"
    assert [json.loads(line)["index"] for line in (out / "samples.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert [len(call["args"][1]) for call in calls] == [2, 1]  # --batch-size 2 over --n 3
    assert all(call["steps"] == 3 and call["norm"] == "linf" and call["args"][1].shape[1:] == (1, 12, 12)
               for call in calls)
    assert calls[0]["generator"].initial_seed() == 4 * 1_000_003 + 1  # --seed, the batch's first index (--offset)
    assert len(solved) == 1 and (solved[0]["time_limit"], solved[0]["gap"]) == (3.0, 0.01)
    assert solved[0]["indices"].tolist() == [1, 2, 3]


def test_exact_indices_replace_its_default_n(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pyscipopt")
    out = tmp_path / "indices"
    argv = ["exact", "--model", "tinymlp-pgd-fmnist", "--attack", "fmn-linf", "--steps", "5", "--time-limit", "2",
            "--indices", "7,3", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    assert [json.loads(line)["index"] for line in (out / "samples.jsonl").read_text().splitlines()] == [7, 3]
    assert main([*argv, "--n", "2"]) == 2  # an explicit --n with --indices is refused
    assert "--indices cannot be combined with --n/--offset" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["universal", "transform"])
def test_minmax_every_option(kind: str, files: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[dict[str, Any]] = []
    recording(monkeypatch, minmax_cli, f"{kind}_attack", calls)
    out = tmp_path / kind
    extra = ["--group-size", "2"] if kind == "universal" else ["--transforms", "identity,hflip", "--random"]
    argv = ["minmax", "--kind", kind, *spec_options(files), "--distance", "l2", "--eps", "0.5,1", "--steps", "2",
            "--step-size", "0.3", "--weight-step", "0.2", "--gamma", "0.1", *extra, "--n", "4", "--offset", "1",
            "--batch-size", "2", "--seed", "3", "--device", "cpu:0", "--out", str(out), "--no-progress"]
    others = {"--group-size", "--transforms", "--random"} - set(extra)  # they apply to the other --kind
    assert {a for a in argv if a.startswith("--")} | others | {"--indices"} == options_of("minmax")
    assert main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"model   {files['model']} (python")
    assert printed[1].startswith(f"data    {files['idx']}")
    results = json.loads((out / "results.json").read_text())
    check_spec_provenance(results["provenance"], files)
    assert results["environment"]["device"] == "cpu:0" and results["provenance"]["seed"] == 3
    assert sorted(next(iter(results["results"].values()))) == ["0.5", "1"]
    assert len(calls) == 2 * 2 * 2  # 2 eps x 2 strategies x 2 batches
    for call in calls:
        assert (call["norm"], call["steps"], call["step_size"], call["weight_step"], call["gamma"]) == (
            "l2", 2, 0.3, 0.2, 0.1)
        assert call["eps"] in (0.5, 1.0) and len(call["args"][1]) == 2
        assert call["args"][1].shape[1:] == (1, 12, 12)
        if kind == "universal":
            assert call["group_size"] == 2
        else:
            assert call["transforms"] == ["identity", "hflip"] and call["random"] is True
            assert call["generator"].initial_seed() in (3 * 1_000_003 + 1, 3 * 1_000_003 + 3)  # --seed, --offset


def test_train_every_option(files: dict[str, str], tmp_path: Path) -> None:
    argv = ["train", "--architecture", "mlp", "--model", "mlp-fmnist", "--data", files["idx"], "--recipe", "pgd",
            "--recipe-options", '{"eps": 0.1, "steps": 1}', "--epochs", "2", "--batch-size", "8",
            "--optimizer", "adam", "--lr", "0.002", "--weight-decay", "0.001", "--lr-milestones", "1",
            "--train-samples", "16", "--seed", "2", "--device", "cpu:0", "--name", "tiny", "--out",
            str(tmp_path / "run"), "--no-resume", "--no-progress"]
    assert {a for a in argv if a.startswith("--")} | {"--in-channels"} == options_of("train")
    assert main(argv) == 0
    recipe = json.loads((tmp_path / "run" / "tiny.json").read_text())["recipe"]
    assert {k: recipe[k] for k in ("architecture", "recipe", "recipe_options", "epochs", "batch_size", "optimizer",
                                   "lr", "weight_decay", "lr_milestones", "train_samples", "seed", "init",
                                   "dataset")} == {
        "architecture": "mlp", "recipe": "pgd", "recipe_options": {"eps": 0.1, "steps": 1}, "epochs": 2,
        "batch_size": 8, "optimizer": "adam", "lr": 0.002, "weight_decay": 0.001, "lr_milestones": [1],
        "train_samples": 16, "seed": 2, "init": "mlp-fmnist", "dataset": files["idx"]}
    assert main(["train", "--architecture", "mlp", "--in-channels", "3", "--data", files["idx"], "--epochs", "1",
                 "--batch-size", "8", "--train-samples", "8", "--name", "rgb", "--out", str(tmp_path / "rgb"),
                 "--no-progress"]) == 0
    assert json.loads((tmp_path / "rgb" / "rgb.json").read_text())["in_channels"] == 3


def test_models_has_no_options() -> None:
    assert options_of("models") == set()


def test_a_model_option_given_per_model(files: dict[str, str], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["minmax", "--model", f"{files['model']},{files['model']}", "--model-args", '{"hidden": 5}',
                 "--model-args", '{"hidden": 5}', "--model-args", '{"hidden": 6}', "--num-classes", "10",
                 "--data", files["idx"], "--resize", "12", "--n", "2", "--steps", "1", "--out", str(tmp_path / "o")]
    assert main(arguments) == 2
    assert "--model-args is given 3 times for 2 --model(s)" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["attack", "benchmark", "minmax", "exact", "train", "models"])
def test_only_the_commands_that_run_under_torchrun_say_so(command: str) -> None:
    # Before: the shared --n and --device help said how to run under torchrun for benchmark, minmax and exact too,
    # which do not shard (only attack and train start a process group: edgewise.eval.distributed.start).
    parser = build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    assert ("torchrun" in parser.format_help()) == (command in ("attack", "train"))
