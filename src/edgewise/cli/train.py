"""``edgewise train``: train a zoo architecture with a recipe, resumable, under one process or torchrun."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from edgewise.cli import csv, folder
from edgewise.cli.options import refuse_claimed, safe_name
from edgewise.data import fashion_mnist, stack
from edgewise.data import load as load_dataset
from edgewise.eval.distributed import start, stop
from edgewise.models import ARCHITECTURES, list_models
from edgewise.training import RECIPES, TrainConfig, train


def register(commands: Any) -> None:
    parser = commands.add_parser("train", help="train a model (standard or adversarial recipes)",
                                 description="Train a zoo architecture with a recipe, resumable, under one process "
                                 "or torchrun; writes OUT/NAME.pt and OUT/NAME.json (docs/cli.md).")
    defaults = TrainConfig()
    parser.add_argument("--architecture", default=None,
                        help=f"architecture to train, one of {', '.join(sorted(ARCHITECTURES))} (default: "
                             f"--model's, else {defaults.architecture})")
    parser.add_argument("--model", default=None,
                        help="zoo model whose weights start the run (fine-tuning; default: none, a fresh "
                             "initialization)")
    parser.add_argument("--data", default="fmnist",
                        help="fmnist (Debian's dataset-fashion-mnist) or a folder of IDX files with the train and "
                             "test splits of 1x28x28 images in 10 classes; the test split measures the accuracy")
    parser.add_argument("--recipe", default="standard", choices=sorted(RECIPES), help="training recipe")
    parser.add_argument("--recipe-options", default="{}", help="JSON object of recipe keyword arguments")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help="global batch (under torchrun split over the processes)")
    parser.add_argument("--optimizer", default=defaults.optimizer, choices=("sgd", "adam"), help="optimizer")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="learning rate")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="weight decay")
    parser.add_argument("--lr-milestones", type=csv(int), default=[],
                        help="comma list of increasing epochs, each >= 1 and < --epochs, after which lr *= 0.1 "
                             "(default: none)")
    parser.add_argument("--in-channels", type=int, default=1, choices=(1, 3),
                        help="3: train on gray images repeated to 3 channels (a color-input model)")
    parser.add_argument("--train-samples", type=int, default=None,
                        help="train on this many images of a seeded random subset of the training set (default: "
                             "all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initialization, order and recipe draws")
    parser.add_argument("--device", default="cpu",
                        help="cpu or cuda; under torchrun each process takes cuda:LOCAL_RANK (nccl) or the CPU (gloo)")
    parser.add_argument("--name", default=None, help="zoo name of the result (default: ARCHITECTURE-RECIPE-DATA)")
    parser.add_argument("--out", type=folder, default=None,
                        help="run folder: checkpoints, metrics, weights (default: runs/NAME)")
    parser.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def training_data(spec: str) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The train and test splits of ``--data`` as tensors: Fashion-MNIST, or IDX files of its format (the zoo's
    architectures and the training loop take 1x28x28 images in 10 classes)."""
    if spec == "fmnist":
        return fashion_mnist("train"), fashion_mnist("test")
    splits = []
    for split in ("train", "test"):
        dataset = load_dataset(spec, split=split)
        if dataset.shape != (1, 28, 28) or dataset.num_classes != 10:
            raise ValueError(f"--data {spec!r} ({split}) has {dataset.num_classes} classes of "
                             f"{'x'.join(map(str, dataset.shape))} images; train takes 1x28x28 images in 10 classes")
        splits.append(stack(dataset, range(len(dataset))))
    return splits[0], splits[1]


FLAGS = {"init": "--model", "train_samples": "--train-samples", "batch_size": "--batch-size", "epochs": "--epochs",
         "lr_milestones": "--lr-milestones", "lr": "--lr", "weight_decay": "--weight-decay", "seed": "--seed"}
"""TrainConfig's field names that the command line spells otherwise, as its errors name them."""


def as_flags(error: ValueError) -> ValueError:
    """``error`` of the training library with the fields it names written as this command's options (a name
    already written as an option, ``--epochs``, inside a path, ``runs/epochs``, or a checkpoint record's
    ``lr=0.1``, is left as it is)."""
    return ValueError(re.sub(r"(?<![\w./-])(" + "|".join(FLAGS) + r")(?![\w./=-])",
                             lambda found: FLAGS[found.group(1)], str(error)))


def run(args: argparse.Namespace) -> int:
    try:
        options = json.loads(args.recipe_options)
    except json.JSONDecodeError as error:
        raise ValueError(f"--recipe-options must be a JSON object, got {args.recipe_options!r}") from error
    if not isinstance(options, dict):
        raise ValueError(f"--recipe-options must be a JSON object, got {args.recipe_options!r}")
    zoo = list_models()
    if args.model is not None and args.model not in zoo:
        raise ValueError(f"--model must be a zoo model, one of {sorted(zoo)}, got {args.model!r}")
    architecture = args.architecture or (zoo[args.model]["architecture"] if args.model else
                                         TrainConfig().architecture)
    if architecture not in ARCHITECTURES:
        raise ValueError(f"--architecture must be one of {sorted(ARCHITECTURES)}, got {architecture!r}")
    config = TrainConfig(
        architecture=architecture, dataset=args.data, recipe=args.recipe, epochs=args.epochs,
        batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
        lr_milestones=list(args.lr_milestones), in_channels=args.in_channels, seed=args.seed, recipe_options=options,
        init=args.model, train_samples=args.train_samples,
    )
    try:
        config.validate()
    except ValueError as error:
        raise as_flags(error) from error
    name = args.name or f"{architecture}-{args.recipe}-{safe_name(args.data)}"
    out = args.out or os.path.join("runs", name)
    refuse_claimed(Path(out), "train")
    train_set, test_set = training_data(args.data)
    process = start(args.device)
    try:
        train(config, train_set, test_set, out=out,
              name=name, command=shlex.join(["edgewise", *sys.argv[1:]]), resume=not args.no_resume,
              device=process.device, progress=process.rank == 0 and not args.no_progress)
    except ValueError as error:
        raise as_flags(error) from error
    finally:
        stop(process)
    if process.rank == 0:
        print(f"weights and metadata written to {out}/{name}.pt and {out}/{name}.json")
    return 0
