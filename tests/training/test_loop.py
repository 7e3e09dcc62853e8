"""The shared training loop: resuming gives the uninterrupted weights; 2 processes give the 1-process weights."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from edgewise.cli import main
from edgewise.eval.provenance import edgewise_identity
from edgewise.training import RECIPES, TrainConfig, loop, train
from edgewise.training.recipes import TrainingBatch

WORKER = Path(__file__).with_name("ddp_worker.py")


def synthetic(seed: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 1, 28, 28, generator=generator), torch.randint(0, 10, (count,), generator=generator)


def _config() -> TrainConfig:
    # the pgd recipe draws random starts: resuming must restore the generators too
    return TrainConfig(architecture="mlp", recipe="pgd", epochs=2, batch_size=16, lr=0.05, lr_milestones=[1],
                       seed=4, recipe_options={"eps": 0.1, "steps": 2})


def _interrupted_and_resumed(config: TrainConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *,
                             device: str = "cpu") -> None:
    """An uninterrupted run, and one stopped by Ctrl-C at the second batch of its second epoch (4 batches per epoch)
    then run again: the same weights, bit for bit."""
    train_set, test_set = synthetic(0, 64), synthetic(1, 16)
    reference = train(config, train_set, test_set, out=tmp_path / "a", name="m", progress=False, device=device)

    calls = {"n": 0}
    recipe = RECIPES[config.recipe]

    @functools.wraps(recipe)
    def interrupted(*args: Any, **kwargs: Any) -> TrainingBatch:
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return recipe(*args, **kwargs)

    monkeypatch.setitem(RECIPES, config.recipe, interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config, train_set, test_set, out=tmp_path / "b", name="m", progress=False, device=device)
    monkeypatch.setitem(RECIPES, config.recipe, recipe)
    resumed = train(config, train_set, test_set, out=tmp_path / "b", name="m", progress=False, device=device)
    for (name, expected), actual in zip(reference.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(expected, actual), name


def test_resumed_run_ends_with_the_uninterrupted_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _interrupted_and_resumed(_config(), tmp_path, monkeypatch)
    assert (tmp_path / "b" / "metrics.json").is_file()
    meta = json.loads((tmp_path / "b" / "m.json").read_text())
    (key, value), = meta["final_robust_accuracy"].items()
    assert key == "linf eps 0.1 (PGD-20, first 16 test images)" and 0 <= value <= 1


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
def test_resumed_dropout_run_ends_with_the_uninterrupted_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 device: str) -> None:
    # lenetv2's dropout draws from the global generator of the device it runs on: on CUDA that is the device's own,
    # which the checkpoint must hold as well as the CPU's.
    config = TrainConfig(architecture="lenetv2", recipe="standard", epochs=2, batch_size=16, lr=0.05, seed=4)
    _interrupted_and_resumed(config, tmp_path, monkeypatch, device=device)


def test_two_processes_give_the_weights_of_one(tmp_path: Path) -> None:
    """DDP with a DistributedSampler: 2 gloo processes × batch 32 == 1 process × batch 64, two optimizer steps."""
    sys.path.insert(0, str(WORKER.parent))
    try:
        from ddp_worker import run
    finally:
        sys.path.pop(0)
    single = run(str(tmp_path / "one"), steps=2, batch_size=64)
    out = tmp_path / "two"
    out.mkdir()
    double = _torchrun_weights(out)
    initial = run(str(tmp_path / "zero"), steps=1, batch_size=64).state_dict()
    for name, weights in single.state_dict().items():
        torch.testing.assert_close(double[name], weights, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(initial[name], weights) for name, weights in single.state_dict().items())


def test_two_processes_report_the_metrics_of_the_whole_epoch(tmp_path: Path) -> None:
    # Before: rank 0 wrote metrics.json from its own half of every batch: train_loss and train_accuracy were those
    # of half the training set and differed from the one-process run's; now they are summed over the processes.
    sys.path.insert(0, str(WORKER.parent))
    try:
        from ddp_worker import run
    finally:
        sys.path.pop(0)
    run(str(tmp_path / "one"), steps=None, batch_size=64)
    out = tmp_path / "two"
    out.mkdir()
    _torchrun_weights(out, steps=0)
    single, double = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("one", "two"))
    assert len(single) == len(double) == 1
    for key in ("train_loss", "train_accuracy", "test_accuracy"):
        assert double[0][key] == pytest.approx(single[0][key], rel=1e-5), key
    # The zoo record and the checkpoint say how many processes trained the model (the recipes' draws depend on it).
    assert json.loads((tmp_path / "two" / "ddp.json").read_text())["processes"] == 2
    assert torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=False)["run"]["processes"] == 2
    assert json.loads((tmp_path / "one" / "ddp.json").read_text())["processes"] == 1


def _torchrun_weights(out: Path, attempts: int = 2, steps: int = 2) -> dict[str, torch.Tensor]:
    """The weights two gloo processes under torchrun save in ``out``; a failed launch is retried once and its
    output shown, because a launch can lose the race for the free port it picked (not what is tested here)."""
    # Loopback for the rendezvous and for gloo: no dependence on the machine's hostname resolving.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0", str(WORKER), str(out), str(steps), "64"]
    failures = []
    for _ in range(attempts):
        launch = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        if launch.returncode == 0:
            return torch.load(out / "weights.pt", weights_only=True)
        failures.append(f"exit {launch.returncode}:\n{launch.stdout[-3000:]}\n{launch.stderr[-3000:]}")
    pytest.fail("torchrun failed every time:\n" + "\n---\n".join(failures))


def test_train_cli_rejects_bad_recipe_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--recipe", "ampgd", "--recipe-options", '{"bogus": 1}']) == 2
    assert "takes no option(s) ['bogus']" in capsys.readouterr().err
    assert main(["train", "--recipe", "pgd", "--architecture", "smallcnn", "--model", "mlp-fmnist"]) == 2
    assert "--model must be a zoo model with architecture 'smallcnn'" in capsys.readouterr().err


def test_train_refuses_an_out_of_another_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: train wrote its checkpoint, metrics.json and weights into an `edgewise attack` folder (which holds
    # run.json) without a word, while attack refuses a train folder; now both refuse, before any data is read.
    out = tmp_path / "attacked"
    assert main(["attack", "--model", "tinymlp-fmnist", "--steps", "1", "--n", "2", "--no-progress", "--no-checks",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    before = sorted(path.name for path in out.iterdir())
    assert main(["train", "--architecture", "tinymlp", "--epochs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"--out {out} was written by a run with command='attack', this run has command='train'" in err
    assert sorted(path.name for path in out.iterdir()) == before


@pytest.mark.parametrize("change", [{"lr": 0.01}, {"seed": 5}, {"train_samples": 32}, {"data": 2},
                                    {"test_data": 3},
                                    {"recipe": "pgd", "recipe_options": {"eps": 0.1, "steps": 1}}])
def test_a_checkpoint_of_other_options_is_never_resumed(tmp_path: Path, change: dict[str, Any]) -> None:
    # Before: the checkpoint was loaded whatever the options: a second run with another --lr (or seed, recipe,
    # data) continued the first run's weights and optimizer state (its lr too) and recorded its own options.
    # Another test split (an IDX folder whose t10k files changed) was resumed too: metrics.json then held epochs
    # measured on two test sets.
    train_set, test_set = synthetic(0, 64), synthetic(1, 16)
    config = TrainConfig(architecture="mlp", epochs=1, batch_size=16, lr=0.05, seed=4)
    train(config, train_set, test_set, out=tmp_path, name="m", progress=False)
    options = {k: v for k, v in change.items() if k not in ("data", "test_data")}
    other = TrainConfig(**{**vars(config), "epochs": 2, **options})
    data = synthetic(change["data"], 64) if "data" in change else train_set
    test = synthetic(change["test_data"], 16) if "test_data" in change else test_set
    key = ("train_set_sha256" if "data" in change else "test_set_sha256" if "test_data" in change else
           next(iter(options)))
    with pytest.raises(ValueError, match=f"holds a checkpoint of a run with {key}="):
        train(other, data, test, out=tmp_path, name="m", progress=False)


def test_a_checkpoint_of_other_edgewise_code_is_never_resumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: the checkpoint's record held no edgewise identity, so a run resumed across a code change and its
    # epochs came from two versions of the recipes, while attack, benchmark, minmax and exact refuse that.
    train_set, test_set = synthetic(0, 64), synthetic(1, 16)
    config = TrainConfig(architecture="mlp", epochs=1, batch_size=16, lr=0.05, seed=4)
    train(config, train_set, test_set, out=tmp_path, name="m", progress=False)
    monkeypatch.setattr(loop, "edgewise_identity", lambda: {**edgewise_identity(), "source": "other code"})
    with pytest.raises(ValueError, match=r"holds a checkpoint of a run with edgewise\.source="):
        train(TrainConfig(**{**vars(config), "epochs": 2}), train_set, test_set, out=tmp_path, name="m",
              progress=False)


@pytest.mark.parametrize(("key", "value"), [("processes", 2), ("device", "cuda")])
def test_a_checkpoint_of_another_process_count_or_device_is_never_resumed(tmp_path: Path, key: str,
                                                                          value: Any) -> None:
    # Before: the record held neither, so a run of 2 torchrun processes continued by 1 (or a GPU run continued on
    # the CPU, without its CUDA generator state) mixed epochs of two set-ups under one record.
    train_set, test_set = synthetic(0, 64), synthetic(1, 16)
    config = TrainConfig(architecture="mlp", epochs=1, batch_size=16, lr=0.05, seed=4)
    train(config, train_set, test_set, out=tmp_path, name="m", progress=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["run"][key] == {"processes": 1, "device": "cpu"}[key]
    state["run"][key] = value
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match=f"holds a checkpoint of a run with {key}={value!r}, this run has {key}="):
        train(TrainConfig(**{**vars(config), "epochs": 2}), train_set, test_set, out=tmp_path, name="m",
              progress=False)


def test_more_epochs_continue_a_checkpoint_and_fewer_are_refused(tmp_path: Path) -> None:
    train_set, test_set = synthetic(0, 64), synthetic(1, 16)
    config = TrainConfig(architecture="mlp", epochs=1, batch_size=16, lr=0.05, seed=4)
    train(config, train_set, test_set, out=tmp_path / "a", name="m", progress=False)
    longer = TrainConfig(**{**vars(config), "epochs": 2})
    resumed = train(longer, train_set, test_set, out=tmp_path / "a", name="m", progress=False)
    fresh = train(longer, train_set, test_set, out=tmp_path / "b", name="m", progress=False)
    for (name, expected), actual in zip(fresh.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(expected, actual), name
    with pytest.raises(ValueError, match="holds a checkpoint after epoch 2, this run has --epochs 1"):
        train(config, train_set, test_set, out=tmp_path / "a", name="m", progress=False)


@pytest.mark.parametrize(("options", "message"), [
    ({"train_samples": 100}, "train_samples must be at most the 64 training images, got 100"),
    ({"batch_size": 128}, "batch_size must be at most the 64 training images, got 128"),
])
def test_more_samples_or_a_larger_batch_than_the_training_set_is_refused(tmp_path: Path, options: dict[str, Any],
                                                                        message: str) -> None:
    # Before: --train-samples 100 on 64 images trained on the 64 and recorded 100; a batch larger than the set
    # ran no batch and raised ZeroDivisionError from the epoch's metrics.
    config = TrainConfig(**{**vars(TrainConfig(architecture="mlp", epochs=1, batch_size=16)), **options})
    with pytest.raises(ValueError, match=message):
        train(config, synthetic(0, 64), synthetic(1, 16), out=tmp_path, name="m", progress=False)
    assert not tmp_path.joinpath("checkpoint.pt").exists()



@pytest.mark.parametrize("milestones", [[3], [5], [0], [1, 1], [2, 1]])
def test_lr_milestones_that_never_decay_or_are_out_of_order_are_refused(milestones: list[int]) -> None:
    # Before: a milestone >= epochs (3 epochs, [5]) never decayed the lr, silently; 0 decayed it before the first
    # epoch (the run trained at a tenth of lr); a repeated one decayed it twice at once.
    with pytest.raises(ValueError) as refused:
        TrainConfig(epochs=3, lr_milestones=milestones).validate()
    assert str(refused.value) == ("lr_milestones must be increasing, each >= 1 and < epochs (a decay after the last "
                                  f"epoch never applies), got {milestones} with epochs 3")
    TrainConfig(epochs=3, lr_milestones=[1, 2]).validate()
