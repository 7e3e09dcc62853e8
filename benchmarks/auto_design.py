"""The measurements behind ``attacks.auto``: its members alone and plans of ``auto`` at the same budget, on design
images, under AttackBench's protocol.

    OMP_NUM_THREADS=1 python benchmarks/auto_design.py --models mlp-fmnist,lenet-fmnist --norm l2 \\
        --budget 1000 --n 100 [--plans auto,ddn:0.5+apgd:0.5,...] [--baselines attackbench:sigma-zero,...]

Design images: the held-out Fashion-MNIST test images (outside the shipped sample, correctly classified,
``alma_rmsprop_sweep.held_out``) number 1,000 to 1,000 + n, so that the last held-out images, where ``auto`` is
evaluated (``attackbench_budget.py``), played no part in choosing it. Every attack runs under
``eval.benchmark.budgeted``: Q forward + backward passes per sample, its distance per sample the best successful
point it queried. The single attacks get Q / 2 steps (the minimal form of APGD 10 rounds of Q / 20 steps); a plan
``member:share[:option=value...]+...`` is ``attacks.auto.portfolio`` with those stages (``auto``: ``attacks.auto.auto``
itself, its plan for the norm and the probe for blocked gradients); ``--baselines`` adds other libraries' attacks
with Q / 2 steps. Reported per model: success, median, AttackBench's local optimality against the per-sample best
of everything run on that model, and the paired ratio plan / attack for the first plan.
Writes benchmarks/results/auto_design_NORM_qQ.{md,json}; finished cells are kept (a plan's cell is named by its
stages, so a changed plan is a new cell).
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from alma_rmsprop_sweep import held_out
from edgewise.attacks import ATTACKS, alma, ddn, fmn, sigma_zero
from edgewise.attacks.auto import MASKED_PLANS, PLANS, Stage, portfolio
from edgewise.distances import get as get_distance
from edgewise.eval.benchmark import baseline_attack, budgeted
from edgewise.eval.metrics import format_ratio, local_optimality, paired_ratio, reference_distances
from edgewise.models import load_model

RESULTS = Path(__file__).parent / "results"
OFFSET = 1000


def parse_stage(text: str) -> Stage:
    """``ddn:0.5`` -> ("ddn", 0.5); ``sigma_zero:0.45:sigma=0.01`` -> ("sigma_zero", 0.45, {"sigma": 0.01});
    an option written as digits alone is an int (``fab_t:0.2:target_classes=3``)."""
    name, share, *options = text.split(":")
    if not options:
        return name, float(share)
    return name, float(share), {key: int(value) if value.isdigit() else float(value)
                                for key, value in (o.split("=") for o in options)}


def parse_plan(text: str, norm: str) -> tuple[Stage, ...]:
    """``auto`` -> the norm's plan; ``ddn:0.5+apgd:0.5`` -> (("ddn", 0.5), ("apgd", 0.5))."""
    return PLANS[norm] if text == "auto" else tuple(parse_stage(part) for part in text.split("+"))


def plan_label(stages: tuple[Stage, ...]) -> str:
    return "+".join(":".join([stage[0], f"{stage[1]:g}", *(f"{k}={v:g}" for k, v in
                                                             (stage[2] if len(stage) == 3 else {}).items())])
                    for stage in stages)


def single_attacks(norm: str, budget: int) -> dict[str, Callable[..., torch.Tensor]]:
    steps = budget // 2
    if norm == "l0":
        return {"sigma_zero": functools.partial(sigma_zero, steps=steps)}
    runs: dict[str, Callable[..., torch.Tensor]] = {"fmn": functools.partial(fmn, norm=norm, steps=steps)}
    if norm == "l2":
        runs["ddn"] = functools.partial(ddn, steps=steps)
    if norm in ("l1", "l2"):
        runs["alma"] = functools.partial(alma, distance=norm, steps=steps)
    runs["apgd_minimal"] = functools.partial(ATTACKS["apgd_minimal"], norm=norm, steps=max(steps // 10, 1),
                                             binary_search_steps=10)
    runs["fab_t"] = functools.partial(ATTACKS["fab_t"], norm=norm, steps=steps)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mlp-fmnist,lenet-fmnist,tinymlp-pgd-fmnist,tinycnn-pgd-fmnist")
    parser.add_argument("--norm", default="l2", choices=("l0", "l1", "l2", "linf"))
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--plans", default="auto", help="comma list of plans (member:share+...) or auto")
    parser.add_argument("--baselines", default="", help="comma list of other libraries' attacks (library:name) "
                        "to run with Q / 2 steps beside edgewise's")
    parser.add_argument("--name", default=None, help="results file name (default: auto_design_NORM_qBUDGET)")
    args = parser.parse_args()
    plans = {f"plan {plan_label(stages)}": stages for stages in (parse_plan(p, args.norm)
                                                                for p in args.plans.split(","))}
    runs = single_attacks(args.norm, args.budget)
    baselines = [baseline_attack(spec, distance=args.norm) for spec in filter(None, args.baselines.split(","))]
    runs.update({spec.name: spec.build(spec.within(args.budget // 2)) for spec in baselines})
    runs.update({label: functools.partial(portfolio, stages=stages, norm=args.norm, budget=args.budget,
                                          masked=MASKED_PLANS[args.norm] if stages is PLANS[args.norm] else None)
                 for label, stages in plans.items()})
    name = args.name or f"auto_design_{args.norm}_q{args.budget}"
    path = RESULTS / f"{name}.json"
    record = json.loads(path.read_text()) if path.is_file() else {"n": args.n, "offset": OFFSET, "cells": {}}
    if record["n"] != args.n:
        raise SystemExit(f"{path} was written with --n {record['n']}, this run has {args.n}")
    record["command"] = ("OMP_NUM_THREADS=1 python benchmarks/auto_design.py " +
                         f"--models {args.models} --norm {args.norm} --budget {args.budget} --n {args.n} "
                         f"--plans {args.plans}" + (f" --baselines {args.baselines}" if args.baselines else "")
                         + (f" --name {args.name}" if args.name else ""))
    measure = get_distance(args.norm)
    lines = [f"# auto design: {args.norm}, Q = {args.budget} passes per sample", "",
             f"n = {args.n} held-out Fashion-MNIST test images {OFFSET}..{OFFSET + args.n} (design images), "
             "every attack under AttackBench's budget (the best successful point it queried).", "",
             f"    {record['command']}", ""]
    first_plan = next(iter(plans))
    for model_name in args.models.split(","):
        model = load_model(model_name)
        inputs, labels = (t[OFFSET:] for t in held_out(model, OFFSET + args.n))
        for label, attack in tqdm(runs.items(), desc=model_name):
            key = f"{model_name}/{label}"
            if key in record["cells"]:
                continue
            adv = budgeted(attack, budget=args.budget, distance=args.norm)(model, inputs, labels).detach()
            with torch.no_grad():
                fooled = model(adv).argmax(1) != labels
            record["cells"][key] = torch.where(fooled, measure(inputs)(adv), torch.inf).tolist()
            path.write_text(json.dumps(record))
        cells = {k.split("/", 1)[1]: torch.tensor(v) for k, v in record["cells"].items()
                 if k.split("/", 1)[0] == model_name}
        reference = reference_distances(list(cells.values()))
        lines += [f"## {model_name}", "", f"reference: the per-sample best of the {len(cells)} cells below", "",
                  f"| attack | success | median | LO | {first_plan} / attack (paired) |", "|---|---|---|---|---|"]
        for label, d in sorted(cells.items()):
            lo = local_optimality(d, reference, clean_accuracy=1.0)
            ratio = paired_ratio(cells[first_plan], d) if label != first_plan else None
            paired = format_ratio(ratio, missing="")
            lines.append(f"| {label} | {float(torch.isfinite(d).double().mean()):.3f} | {float(d.median()):.4g} | "
                         f"{lo:.4f} | {paired} |")
        lines.append("")
    (RESULTS / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
