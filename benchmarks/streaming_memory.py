"""Peak memory (RSS) of an evaluation streamed from disk, at two numbers of samples.

    python benchmarks/streaming_memory.py [--sizes 1000,20000] [--steps 2] [--batch-size 256]
                                          [--via cli,library] [--work DIR]

Writes, in ``--work`` (default: a temporary folder, removed afterwards), a tiny 3-channel 64×64 classifier as a
``.py`` file plus a state dict (random weights, seeded) and ``max(--sizes)`` random 3×64×64 uint8 images as an
uncompressed ``.npz`` whose labels are the model's own predictions (so every sample is clean-correct and gets
attacked). Then, per size n, runs one evaluation in a fresh process and reads that process's peak resident set
size (GNU ``/usr/bin/time -f %M``, needed):

- ``--via cli``: ``python -m edgewise attack --model tiny.py:tiny --weights tiny.pt --data images.npz
  --n N --attack ddn --steps S --batch-size B --out DIR --no-progress``;
- ``--via library``: the same through ``edgewise.eval.run_attack`` on ``edgewise.data.load(images.npz)`` with
  ``labels=None`` and ``resume_dir`` (no images kept), then ``results.json``/``samples.jsonl`` written.

Writes benchmarks/results/streaming_memory.{json,md}. Target (issue 16): the largest run's peak RSS within 10% of
the smallest's (memory does not grow with the number of samples).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgewise import models

RESULTS = Path(__file__).parent / "results"
TARGET = 1.10
TIME = "/usr/bin/time"
MODEL_PY = '''"""A tiny 3-channel 64x64 classifier for benchmarks/streaming_memory.py."""

from torch import nn


def tiny():
    return nn.Sequential(nn.Conv2d(3, 8, 5, stride=4), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 15 * 15, 10))
'''


def write_inputs(work: Path, count: int, *, seed: int = 0) -> tuple[Path, Path, Path]:
    """The model file, its weights and ``count`` images labelled by the model: (tiny.py, tiny.pt, images.npz)."""
    source, weights, images = work / "tiny.py", work / "tiny.pt", work / "images.npz"
    source.write_text(MODEL_PY)
    torch.manual_seed(seed)
    model = models.load(f"{source}:tiny")  # built by the loader the evaluation uses, random weights
    torch.save(model.state_dict(), weights)
    generator = np.random.default_rng(seed)
    x = generator.integers(0, 256, size=(count, 3, 64, 64), dtype=np.uint8)
    with torch.no_grad():
        y = torch.cat([model(torch.from_numpy(chunk).float() / 255).argmax(1)
                       for chunk in np.array_split(x, max(1, count // 1000))]).numpy()
    np.savez(images, x=x, y=y)  # uncompressed: the loader reads one image at a time at its offset
    return source, weights, images


def command(via: str, files: tuple[Path, Path, Path], n: int, *, steps: int, batch_size: int, out: Path
            ) -> list[str]:
    source, weights, images = files
    if via == "cli":
        return [sys.executable, "-m", "edgewise", "attack", "--model", f"{source}:tiny", "--weights", str(weights),
                "--data", str(images), "--n", str(n), "--attack", "ddn", "--steps", str(steps), "--batch-size",
                str(batch_size), "--out", str(out), "--no-progress"]
    return [sys.executable, __file__, "--child", "--model", f"{source}:tiny", "--weights", str(weights), "--data",
            str(images), "--n", str(n), "--steps", str(steps), "--batch-size", str(batch_size), "--out", str(out)]


def measure(arguments: list[str], work: Path) -> dict[str, Any]:
    """Run ``arguments`` in a child process; its peak RSS (MiB), wall time and exit status.

    The peak is read by ``/usr/bin/time`` (GNU time), which forks the command from its own small process: a child
    forked from this one would start out sharing this process's pages, which the kernel counts into the child's
    peak until it execs (this process holds the written images)."""
    report = work / "time.txt"
    started = time.perf_counter()
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([TIME, "-f", "%M", "-o", str(report), *arguments], capture_output=True, text=True,
                          env=environment, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} exited {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}")
    return {"peak_rss_mib": int(report.read_text().split()[-1]) / 1024, "seconds": time.perf_counter() - started}


def child(args: argparse.Namespace) -> None:
    """The library path: stream the data through run_attack and write the results files, as the CLI does."""
    from edgewise import data
    from edgewise.attacks import ddn
    from edgewise.eval import run_attack
    from edgewise.eval.report import environment, write_results

    torch.set_num_threads(1)
    model = models.load(args.model, weights=args.weights)
    dataset = data.load(args.data)
    result = run_attack(model, dataset, None, functools.partial(ddn, steps=args.steps),
                        indices=data.select(dataset, n=args.n), batch_size=args.batch_size,
                        resume_dir=Path(args.out) / "batches", progress=False)
    write_results(Path(args.out), result, result.summary(), vars(args), environment("cpu", 0))


def table(runs: dict[str, dict[str, Any]], arguments: str, floor: float) -> str:
    lines = ["# Peak memory of a streamed evaluation", "",
             f"`python benchmarks/streaming_memory.py {arguments}`: ddn on a tiny 3×64×64 model, an uncompressed "
             ".npz, each run a fresh process, peak RSS from `/usr/bin/time -f %M`. A bare `python -c 'import "
             f"torch'` peaks at {floor:.1f} MiB on the same machine (this torch build maps its libraries at "
             "import): the column above it is what the evaluation itself adds.", ""]
    for via, run in runs.items():
        verdict = "met" if run["met"] else "NOT met"
        lines += [f"## Through the {via}", "",
                  "| samples | peak RSS (MiB) | above `import torch` (MiB) | wall time (s) | command |",
                  "|---:|---:|---:|---:|---|"]
        lines += [f"| {r['n']:,} | {r['peak_rss_mib']:.1f} | {r['above_import_torch_mib']:.1f} | "
                  f"{r['seconds']:.1f} | `{r['command']}` |" for r in run["rows"]]
        lines += ["", f"Largest / smallest peak: {run['ratio']:.3f} (target <= {TARGET:.2f}: {verdict}).", ""]
    return "\n".join(lines)


def measure_sizes(via: str, files: tuple[Path, Path, Path], sizes: list[int], work: Path, floor: float, *,
                  steps: int, batch_size: int) -> dict[str, Any]:
    rows = []
    for n in sizes:
        out = work / f"out-{via}-{n}"
        shutil.rmtree(out, ignore_errors=True)
        arguments = command(via, files, n, steps=steps, batch_size=batch_size, out=out)
        measured = measure(arguments, work)
        summary = json.loads((out / "results.json").read_text())["summary"]
        shown = " ".join("python" if a == sys.executable else Path(a).name if a.startswith(str(work))
                         else os.path.relpath(a) if a == __file__ else a for a in arguments)
        rows.append({"n": n, **measured, "above_import_torch_mib": measured["peak_rss_mib"] - floor,
                     "samples_written": summary["n"], "success_rate": summary["success_rate"], "command": shown})
        print(f"{via} n={n}: peak RSS {measured['peak_rss_mib']:.1f} MiB, {measured['seconds']:.1f} s", flush=True)
    ratio = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    return {"rows": rows, "ratio": ratio, "met": ratio <= TARGET}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,20000", help="numbers of samples, comma-separated")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--via", default="cli,library", help="cli, library or both, comma-separated")
    parser.add_argument("--work", default=None, help="folder for the model, data and outputs (default: temporary)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    try:
        sizes = sorted(int(size) for size in args.sizes.split(","))
    except ValueError:
        parser.error(f"--sizes must be comma-separated ints, got {args.sizes!r}")
    vias = args.via.split(",")
    if not vias or not set(vias) <= {"cli", "library"}:
        parser.error(f"--via must be cli, library or both, got {args.via!r}")
    if len(sizes) < 2 or sizes[0] < 1 or args.steps < 1 or args.batch_size < 1:
        parser.error("--sizes needs two or more positive sizes; --steps and --batch-size must be >= 1")
    if not Path(TIME).is_file():
        parser.error(f"{TIME} (GNU time) is needed to read the peak RSS of a child process")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="streaming_memory-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        files = write_inputs(work, sizes[-1])
        floor = measure([sys.executable, "-c", "import torch"], work)["peak_rss_mib"]
        print(f"python -c 'import torch': peak RSS {floor:.1f} MiB", flush=True)
        runs = {via: measure_sizes(via, files, sizes, work, floor, steps=args.steps, batch_size=args.batch_size)
                for via in vias}
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "streaming_memory.json").write_text(json.dumps(
        {"steps": args.steps, "batch_size": args.batch_size, "import_torch_peak_rss_mib": floor, "target": TARGET,
         "runs": runs, "torch": torch.__version__}, indent=1) + "\n")
    (RESULTS / "streaming_memory.md").write_text(table(runs, " ".join(sys.argv[1:]), floor))
    for via, run in runs.items():
        print(f"{via}: largest / smallest peak RSS {run['ratio']:.3f} (target <= {TARGET})")


if __name__ == "__main__":
    main()
