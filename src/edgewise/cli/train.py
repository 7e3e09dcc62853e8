"""``edgewise train``: train a zoo architecture with a recipe, resumable, under one process or torchrun."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import Any

from edgewise.eval.distributed import start, stop
from edgewise.training import RECIPES, TrainConfig, train

DATASETS = ("fmnist",)


def register(commands: Any) -> None:
    parser = commands.add_parser("train", help="train a model (standard or adversarial recipes)")
    defaults = TrainConfig()
    parser.add_argument("--model", default=defaults.architecture, help="architecture (smallcnn, mlp, ...)")
    parser.add_argument("--dataset", default="fmnist", choices=DATASETS)
    parser.add_argument("--data-root", default=None, help="folder with the IDX files (default: Debian's)")
    parser.add_argument("--recipe", default="standard", choices=sorted(RECIPES))
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--optimizer", default=defaults.optimizer, choices=("sgd", "adam"))
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--lr-milestones", default="", help="comma-separated epochs where lr *= 0.1")
    parser.add_argument("--in-channels", type=int, default=1, choices=(1, 3),
                        help="3: train on gray images repeated to 3 channels (a color-input model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe-options", default="{}", help="JSON object of recipe keyword arguments")
    parser.add_argument("--init", default=None, help="zoo model whose weights start the run (fine-tuning)")
    parser.add_argument("--train-samples", type=int, default=None,
                        help="train on this many images of a seeded random subset of the training set")
    parser.add_argument("--name", default=None, help="zoo name of the result (default: MODEL-RECIPE-DATASET)")
    parser.add_argument("--out", default=None, help="run folder (checkpoints, metrics, weights)")
    parser.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
    parser.add_argument("--device", default="cpu",
                        help="cpu or cuda; under torchrun each process takes cuda:LOCAL_RANK (nccl) or the CPU (gloo)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from edgewise.data import fashion_mnist

    try:
        options = json.loads(args.recipe_options)
    except json.JSONDecodeError as error:
        raise ValueError(f"--recipe-options must be a JSON object, got {args.recipe_options!r}") from error
    if not isinstance(options, dict):
        raise ValueError(f"--recipe-options must be a JSON object, got {args.recipe_options!r}")
    milestones = [int(m) for m in args.lr_milestones.split(",") if m]
    config = TrainConfig(
        architecture=args.model, dataset=args.dataset, recipe=args.recipe, epochs=args.epochs,
        batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
        lr_milestones=milestones, in_channels=args.in_channels, seed=args.seed, recipe_options=options,
        init=args.init, train_samples=args.train_samples,
    )
    config.validate()
    name = args.name or f"{args.model}-{args.recipe}-{args.dataset}"
    out = args.out or os.path.join("runs", name)
    process = start(args.device)
    try:
        train(config, fashion_mnist("train", args.data_root), fashion_mnist("test", args.data_root), out=out,
              name=name, command=shlex.join(["edgewise", *sys.argv[1:]]), resume=not args.no_resume,
              device=process.device, progress=process.rank == 0)
    finally:
        stop(process)
    if process.rank == 0:
        print(f"weights and metadata written to {out}/{name}.pt and {out}/{name}.json")
    return 0
