"""The end-to-end run of "your model, your data" (docs/own-model.md): a 3-channel 32×32 ResNet-18 of torchvision's
architecture (benchmarks/cifar_resnet18.py) trained briefly on CIFAR-format data, then evaluated by the commands.

    python benchmarks/own_model_e2e.py data  --out runs/own-model        # CIFAR-format folder
    python benchmarks/own_model_e2e.py train --out runs/own-model [--epochs 2] [--train-samples 2000]

``data`` writes ``OUT/cifar`` in CIFAR-10's python-batch format from Fashion-MNIST: ``data_batch_1..5`` hold the
first ``--train-samples`` training images, ``test_batch`` the shipped 1,000-image sample, each 28×28 gray image
padded by 2 black pixels and repeated to 3×32×32. ``train`` trains the model through ``edgewise.models.load``
(``--mean``/``--std`` of Fashion-MNIST inside the model) on ``edgewise.data.load(OUT/cifar, split="train")``
with SGD (momentum 0.9, weight decay 5e-4, constant learning rate), checkpointing every epoch (an interrupted
run resumes from its last finished epoch), and writes ``OUT/resnet18.pt`` (the state dict under
``state_dict``, normalization excluded: it is given again with --mean/--std) and ``OUT/train.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
from pathlib import Path

import torch
from tqdm import tqdm

from edgewise import data, models
from edgewise.data import CLASSES, fashion_mnist, sample

MODEL = str(Path(__file__).with_name("cifar_resnet18.py")) + ":cifar_resnet18"
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST's, as the zoo's models


def to_cifar(images: torch.Tensor) -> torch.Tensor:
    """N×1×28×28 floats in [0, 1] -> N×3072 uint8 rows of CIFAR's layout (3×32×32, channel-major)."""
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2)).expand(-1, 3, -1, -1)
    return padded.mul(255).round().to(torch.uint8).reshape(len(images), -1)


def write_batch(path: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    with open(path, "wb") as handle:
        pickle.dump({"data": to_cifar(images).numpy(), "labels": labels.tolist()}, handle)


def make_data(out: Path, train_samples: int) -> None:
    folder = out / "cifar"
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = fashion_mnist("train")
    for part, chunk in enumerate(torch.arange(train_samples).chunk(5)):
        write_batch(folder / f"data_batch_{part + 1}", train_x[chunk], train_y[chunk])
    write_batch(folder / "test_batch", *sample())
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": list(CLASSES)}, handle)


def train(out: Path, *, epochs: int, batch_size: int, lr: float, seed: int) -> None:
    dataset = data.load(str(out / "cifar"), split="train")
    test = data.load(str(out / "cifar"))
    torch.manual_seed(seed)
    model = models.load(MODEL, mean=MEAN, std=STD)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    checkpoint = out / "checkpoint.pt"
    start, history = 0, []
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        start, history = state["epoch"], json.loads(state["history"])
    for epoch in range(start, epochs):
        model.train()
        order = torch.randperm(len(dataset))
        total = 0.0
        for batch in tqdm(order.split(batch_size), desc=f"epoch {epoch + 1}", unit="batch"):
            inputs, labels = data.stack(dataset, batch)
            loss = torch.nn.functional.cross_entropy(model(inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss) * len(batch)
        history.append({"epoch": epoch + 1, "train_loss": total / len(dataset)})
        tmp = checkpoint.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
                    "epoch": epoch + 1, "history": json.dumps(history)}, tmp)
        os.replace(tmp, checkpoint)
    model.eval()
    correct = 0
    with torch.no_grad():
        for chunk in torch.arange(len(test)).split(100):
            inputs, labels = data.stack(test, chunk)
            correct += int((model(inputs).argmax(1) == labels).sum())
    network = model[1]  # the ResNet behind models.load's Normalize
    torch.save({"state_dict": network.state_dict(), "epochs": epochs}, out / "resnet18.pt")
    summary = {"model": MODEL, "mean": MEAN, "std": STD, "epochs": epochs, "batch_size": batch_size, "lr": lr,
               "seed": seed, "train_samples": len(dataset), "history": history,
               "test_accuracy_on_sample": correct / len(test), "torch_threads": torch.get_num_threads()}
    (out / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("data", "train"))
    parser.add_argument("--out", type=Path, default=Path("runs/own-model"))
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.step == "data":
        make_data(args.out, args.train_samples)
    else:
        train(args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)


if __name__ == "__main__":
    main()
