"""One training loop for every recipe: seeded, resumable, tqdm progress, per-epoch metrics, DDP-ready.

Under ``torchrun`` (``torch.distributed`` initialized) the model is wrapped in DistributedDataParallel and each
process reads its share of every global batch through a DistributedSampler. The sampler draws the same
permutation for any number of processes and rank r takes positions r, r + W, ...; with a per-process batch of
``batch_size / W`` the union of the ranks' batches is exactly the single-process batch, so the averaged
gradients, and the weights, do not depend on the number of processes beyond floating-point noise. Recipes that
draw random numbers (PGD's random start) use one generator per process and epoch: their draws, not their
distribution, change with the number of processes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from tqdm import tqdm

from edgewise.attacks.pgd import pgd
from edgewise.eval.provenance import differing, edgewise_identity, fingerprint_tensor
from edgewise.models.zoo import build_model, list_models, load_model, sha256_file
from edgewise.training.recipes import make_recipe, threat_models
from edgewise.validation import check_inputs, check_positive

ROBUST_SAMPLES = 1000
CLASSES = 10


@dataclass
class TrainConfig:
    """Everything that defines a training run; recorded next to the weights it produces."""

    architecture: str = "smallcnn"
    dataset: str = "fmnist"
    recipe: str = "standard"
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    in_channels: int = 1
    mean: float = 0.2860
    std: float = 0.3530
    seed: int = 0
    recipe_options: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    train_samples: int | None = None

    def validate(self) -> None:
        make_recipe(self.recipe, self.recipe_options)
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        check_hyper_parameters(self)
        milestones = self.lr_milestones
        # MultiStepLR decays after each milestone's epoch: at or after the last one it never applies, 0 decays
        # before the first, and a repeated one decays twice at once.
        if milestones != sorted(set(milestones)) or any(not 1 <= m < self.epochs for m in milestones):
            raise ValueError(f"lr_milestones must be increasing, each >= 1 and < epochs (a decay after the last epoch "
                             f"never applies), got {milestones} with epochs {self.epochs}")
        if self.in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {self.in_channels}")
        if self.init is not None:
            meta = list_models().get(self.init)
            if meta is None or (meta["architecture"], meta.get("in_channels", 1)) != (self.architecture,
                                                                                      self.in_channels):
                raise ValueError(f"init must be a zoo model with architecture {self.architecture!r} and "
                                 f"{self.in_channels} input channel(s), got {self.init!r}")
        if self.train_samples is not None and self.train_samples < self.batch_size:
            raise ValueError(f"train_samples must be >= batch_size {self.batch_size}, got {self.train_samples}")


def check_hyper_parameters(config: TrainConfig) -> None:
    """Counts are ints >= 1, the seed an int; lr, momentum and weight decay finite and >= 0, the lr decay factor
    finite and > 0 (a NaN lr trains NaN weights, a negative decay turns the steps after a milestone into ascent)."""
    for name in ("epochs", "batch_size"):
        check_positive(name, getattr(config, name), integer=True)
    if config.train_samples is not None:
        check_positive("train_samples", config.train_samples, integer=True)
    if isinstance(config.seed, bool) or not isinstance(config.seed, int):
        raise TypeError(f"seed must be an int, got {type(config.seed).__name__}")
    for name in ("lr", "momentum", "weight_decay"):
        check_positive(name, getattr(config, name), allow_zero=True)
    check_positive("lr_gamma", config.lr_gamma)


def check_split(name: str, split: tuple[torch.Tensor, torch.Tensor]) -> None:
    """``split``: images (N, 1, 28, 28) in [0, 1] and int64 labels (N,) below :data:`CLASSES`, the data of the zoo's
    architectures (uint8 or 0-255 images would train silently on the wrong scale of their normalization)."""
    images, labels = split
    try:
        check_inputs(images, labels)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{name}: {error}") from error
    if tuple(images.shape[1:]) != (1, 28, 28):
        raise ValueError(f"{name}: inputs must have shape (N, 1, 28, 28), got {tuple(images.shape)}")
    if int(labels.max()) >= CLASSES:
        raise ValueError(f"{name}: labels must be < {CLASSES} (the classes of the architectures), got max "
                         f"{int(labels.max())}")


def summed_over_processes(device: torch.device, *values: float) -> list[float]:
    """``values`` summed over the torchrun processes: an epoch's loss and accuracy are those of every process's
    share of the batches, not of rank 0's alone."""
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return [float(value) for value in total.tolist()]


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The states of the global generators that dropout draws from on ``device``: the CPU's, and on a CUDA device
    that device's own (a resumed run restores both, or its dropout masks would differ from an uninterrupted run's)."""
    state = {"rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Sets the generators saved by :func:`rng_state` (a checkpoint of a CPU run holds no CUDA state)."""
    torch.set_rng_state(state["rng"].cpu())
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


@torch.no_grad()
def accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode by the caller) on a dataset held in memory."""
    device = next(model.parameters()).device
    correct = sum(
        int((model(inputs[i:i + batch_size].to(device)).argmax(1).cpu() == labels[i:i + batch_size]).sum())
        for i in range(0, len(inputs), batch_size)
    )
    return correct / len(inputs)


def checkpoint_record(config: TrainConfig, train_set: tuple[torch.Tensor, torch.Tensor],
                      test_set: tuple[torch.Tensor, torch.Tensor], *, processes: int,
                      device: torch.device) -> dict[str, Any]:
    """What a checkpoint's finished epochs depend on: the configuration but its number of epochs (epoch k is the
    same for any total, the lr milestones being epochs), the training data and the test data that measured each
    epoch's accuracy in its metrics (sha256 of their images and labels), the edgewise code that trained them,
    and where: the number of torchrun processes (the recipes' draws depend on it, module docstring) and the
    device type (a CPU run holds no CUDA generator state to continue)."""
    return {**{k: v for k, v in asdict(config).items() if k != "epochs"}, "edgewise": edgewise_identity(),
            "train_set_sha256": [fingerprint_tensor(t) for t in train_set],
            "test_set_sha256": [fingerprint_tensor(t) for t in test_set],
            "processes": processes, "device": device.type}


def check_checkpoint(state: dict[str, Any], record: dict[str, Any], config: TrainConfig, path: Path) -> None:
    """Refuse to resume from a checkpoint of another run (its weights, optimizer state with its lr, and epochs
    would be continued under this run's record) or one trained past ``config.epochs``, in one line."""
    difference = (differing(state["run"], record) if "run" in state else
                  "no record of its options (a checkpoint written before they were kept)")
    if difference is not None:
        raise ValueError(f"--out {path.parent} holds a checkpoint of a run with {difference}: use another --out, or "
                         "--no-resume to start afresh")
    if state["epoch"] > config.epochs:
        raise ValueError(f"--out {path.parent} holds a checkpoint after epoch {state['epoch']}, this run has "
                         f"--epochs {config.epochs}: use another --out, or --no-resume to start afresh")


def train(config: TrainConfig, train_set: tuple[torch.Tensor, torch.Tensor],
          test_set: tuple[torch.Tensor, torch.Tensor], *, out: str | Path, name: str,
          command: str = "", resume: bool = True, max_steps: int | None = None,
          progress: bool = True, device: str | torch.device = "cpu") -> nn.Module:
    """Train ``config`` on ``train_set``; write checkpoints, ``metrics.json`` and ``NAME.pt``/``NAME.json``.

    Every epoch ends with an atomic checkpoint (model, optimizer, scheduler, RNG state) in ``out``; with
    ``resume`` a run restarted with the same arguments continues from the last finished epoch and ends with
    the same weights as an uninterrupted run. ``max_steps`` stops after that many optimizer steps (tests).
    ``device``: where the model and the batches live (under torchrun: this process's device).
    """
    config.validate()
    check_split("train_set", train_set)
    check_split("test_set", test_set)
    rank, world = _world()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must be divisible by the number of processes {world}")
    available = len(train_set[0])
    if config.train_samples is not None and config.train_samples > available:
        # The subset would silently be the whole set while NAME.json records the larger count.
        raise ValueError(f"train_samples must be at most the {available} training images, got {config.train_samples}")
    if min(available, config.train_samples or available) < config.batch_size:
        # Full batches only (drop_last): no batch at all, and the epoch's metrics divided by zero.
        raise ValueError(f"batch_size must be at most the {available} training images, got {config.batch_size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        model = build_model(config.architecture, in_channels=config.in_channels, mean=config.mean,
                            std=config.std)
    if config.init is not None:
        model.load_state_dict(load_model(config.init).state_dict())
    device = torch.device(device)
    model.to(device)
    optimizer = _make_optimizer(config, model)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.lr_milestones, config.lr_gamma)
    recipe = make_recipe(config.recipe, config.recipe_options)
    metrics: list[dict[str, float]] = []
    start_epoch = 0
    checkpoint_path = out / "checkpoint.pt"
    record = checkpoint_record(config, train_set, test_set, processes=world, device=device)
    # The global RNG drives dropout during training: seed it, and restore its state when resuming.
    torch.manual_seed(config.seed)
    if resume and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        check_checkpoint(state, record, config, checkpoint_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state, device)
        metrics, start_epoch = state["metrics"], state["epoch"]
    repeat = (lambda t: t.expand(-1, 3, -1, -1)) if config.in_channels == 3 else (lambda t: t)
    if config.train_samples is not None:
        # A fixed, seeded subset of the training set (recorded in the recipe): adversarial recipes cost steps×.
        subset = torch.randperm(len(train_set[0]), generator=torch.Generator().manual_seed(config.seed))
        train_set = (train_set[0][subset[:config.train_samples]], train_set[1][subset[:config.train_samples]])
    dataset = TensorDataset(*train_set)
    sampler: DistributedSampler[tuple[torch.Tensor, ...]] = DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=config.seed, drop_last=True)
    loader = DataLoader(dataset, batch_size=config.batch_size // world, sampler=sampler, drop_last=True)
    net: nn.Module = model
    if world > 1:
        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    steps = 0
    for epoch in range(start_epoch, config.epochs):
        sampler.set_epoch(epoch)
        generator = torch.Generator(device).manual_seed(config.seed * 100_003 + epoch * world + rank)
        model.train()
        started, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0.0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress or rank != 0,
                   leave=False)
        for cpu_inputs, cpu_labels in bar:
            inputs, labels = cpu_inputs.to(device), cpu_labels.to(device)
            # The adversaries see the network in eval mode, the outer step trains it (recipes' docstring).
            model.eval()
            batch = recipe(model, repeat(inputs), labels, generator=generator)
            model.train()
            logits = net(batch.inputs)
            losses = nn.functional.cross_entropy(logits, batch.labels, reduction="none")
            loss = (batch.weights * losses).sum() / len(labels)
            if batch.penalty is not None:
                loss = loss + batch.penalty
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(labels)
            loss_sum += float(loss.detach()) * len(labels)
            # accuracy on what the model is trained on (clean or adversarial inputs), per clean sample
            correct += float((logits.argmax(1) == batch.labels).double().mean()) * len(labels)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
            steps += 1
            if max_steps is not None and steps >= max_steps:
                return model.eval()
        if world > 1:
            loss_sum, correct, counted = summed_over_processes(device, loss_sum, correct, float(seen))
            seen = int(counted)
        scheduler.step()
        model.eval()
        test_accuracy = accuracy(model, repeat(test_set[0]), test_set[1])
        metrics.append({"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                        "test_accuracy": test_accuracy, "seconds": time.perf_counter() - started})
        if rank == 0:
            print(json.dumps(metrics[-1]), flush=True)
            _atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), **rng_state(device),
                          "metrics": metrics, "epoch": epoch + 1, "run": record}, checkpoint_path)
            (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    # A run resumed after its last epoch trained nothing and its model is still in the train mode it was built in.
    model.eval()
    if rank == 0:
        robust = robust_accuracy(model, repeat(test_set[0][:ROBUST_SAMPLES]), test_set[1][:ROBUST_SAMPLES],
                                 threat_models(config.recipe, config.recipe_options), seed=config.seed)
        write_zoo_entry(model, config, out=out, name=name, command=command, metrics=metrics,
                        extra={"processes": world, **({"final_robust_accuracy": robust} if robust else {})})
    return model


def robust_accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                    threats: list[tuple[str, float]], *, seed: int, steps: int = 20,
                    batch_size: int = 500) -> dict[str, float]:
    """Accuracy under a ``steps``-step PGD (random start) for each (norm, ε) of ``threats``, on a dataset in memory.

    A quick end-of-training check, not an evaluation: ``benchmarks/robust_training.py`` adds the minimal attacks.
    """
    device = next(model.parameters()).device
    results = {}
    for norm, eps in threats:
        generator = torch.Generator(device).manual_seed(seed)
        adversarials = torch.cat([
            pgd(model, inputs[i:i + batch_size].to(device), labels[i:i + batch_size].to(device), norm=norm, eps=eps,
                steps=steps, random_init=True, generator=generator).cpu()
            for i in range(0, len(inputs), batch_size)
        ])
        key = f"{norm} eps {eps:g} (PGD-{steps}, first {len(inputs)} test images)"
        results[key] = accuracy(model, adversarials, labels, batch_size=batch_size)
    return results


def write_zoo_entry(model: nn.Module, config: TrainConfig, *, out: Path, name: str, command: str,
                    metrics: list[dict[str, float]], extra: dict[str, Any] | None = None) -> None:
    """Write ``NAME.pt`` (state dict) and ``NAME.json`` (the zoo's metadata record) into ``out``."""
    weights = out / f"{name}.pt"
    _atomic_save({key: value.cpu() for key, value in model.state_dict().items()}, weights)
    meta = {
        "name": name, "architecture": config.architecture, "dataset": config.dataset,
        "input_shape": [config.in_channels, 28, 28], "in_channels": config.in_channels, "num_classes": CLASSES,
        "mean": config.mean, "std": config.std,
        "clean_test_accuracy": metrics[-1]["test_accuracy"] if metrics else None,
        "recipe": asdict(config), "command": command, "torch": torch.__version__,
        "sha256": sha256_file(weights), **(extra or {}),
    }
    (out / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
