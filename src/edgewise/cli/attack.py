"""``edgewise attack``: run one attack on a zoo model and write the report (the main job)."""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import time
from pathlib import Path
from typing import Any

import torch

from edgewise.attacks import ATTACKS, distance_keyword
from edgewise.attacks.base import check_has_gradient, check_levels
from edgewise.cli import csv
from edgewise.cli.options import (
    add_data,
    add_models,
    add_run,
    check_applicable,
    check_eps,
    check_positive,
    claim_out,
    data_line,
    for_model,
    load_data,
    load_models,
    model_line,
    remove_outputs,
    safe_name,
    targets_of,
)
from edgewise.data import check_compatible, stack
from edgewise.distances import get as get_distance
from edgewise.distances import names as distance_names
from edgewise.eval import DISTANCES, AttackResult, run_attack
from edgewise.eval.distributed import gather, shard_positions, start, stop
from edgewise.eval.provenance import describe_attack, fingerprint_tensor
from edgewise.eval.report import environment, plot_curves, plot_examples, write_results
from edgewise.eval.sanity import check_evaluation
from edgewise.eval.trace import Trace, write_trace
from edgewise.projections import NORMS

DEFAULT_EPS = {"l0": (5.0, 10.0, 20.0), "l1": (2.0, 5.0, 10.0), "l2": (0.25, 0.5, 1.0, 1.5),
               "linf": (0.05, 0.1, 0.2)}


def takes_callback(attack: Any) -> bool:
    """Whether ``attack`` takes ``callback`` (by name, or through ``**options`` passed on: fab's registry entry)."""
    parameters = inspect.signature(attack).parameters.values()
    return any(p.name == "callback" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def traceable() -> list[str]:
    """The registry's attacks that ``--trace`` can follow."""
    return sorted(name for name, attack in ATTACKS.items() if takes_callback(attack))


def register(commands: Any) -> None:
    parser = commands.add_parser("attack", help="attack a model and write a robustness report",
                                 description="Run one attack on a model over a dataset and write the report: "
                                 "results.json, samples.jsonl, robust_accuracy.png, examples.png (docs/cli.md).")
    add_models(parser, default=["smallcnn-fmnist"], several=False, help="the model (see `edgewise models`)")
    parser.add_argument("--attack", default="ddn", help=f"one of {', '.join(sorted(ATTACKS))}")
    parser.add_argument("--steps", type=int, default=None, help="attack iterations (default: the attack's own)")
    parser.add_argument("--distance", default=None,
                        help="what the attack minimizes: a registry distance with a gradient (alma, cw: "
                        f"{', '.join(n for n in distance_names() if n != 'l0')}) or an lp norm (fmn, pgd: "
                        f"{', '.join(NORMS)}); ddn is l2 "
                        "only (default: the attack's own); the report measures this distance")
    parser.add_argument("--attack-options", default="{}", help="JSON object of extra keyword arguments")
    parser.add_argument("--targeted", action="store_true",
                        help="attack each sample toward the target (y + 1) mod classes, and tell the attack it is "
                             "targeted (clean accuracy stays measured against the labels y)")
    parser.add_argument("--levels", type=int, default=None,
                        help="quantize returned examples to this many levels before verification (256: 8 bits; "
                             "default: none); an attack that quantizes its iterates (ddn) quantizes to the same")
    parser.add_argument("--eps", type=csv(float), default=None,
                        help="comma list of budgets for robust accuracy, e.g. 0.5,1 (default: a list per "
                             "distance); a summary only: changing it reuses the finished batches")
    add_data(parser, torchrun=True)
    add_run(parser, out="results/MODEL-ATTACK, MODEL the spec's file or zoo name", torchrun=True)
    parser.add_argument("--trace", action="store_true",
                        help=f"for attacks that take a callback ({', '.join(traceable())}): write trace.json and "
                             "trace.png, the median over samples, per step, of what the attack reports (alma: mu, "
                             "rho, lr, distance, best distance); a traced run keeps its own --out and computes "
                             "every batch again (each one traced)")
    parser.add_argument("--no-checks", dest="checks", action="store_false",
                        help="skip the sanity checks of the model before the attack (probabilities, train mode, "
                             "non-determinism, masked gradients)")
    parser.set_defaults(run=run)


def bind_once(kwargs: dict[str, Any], keyword: str, value: Any, flag: str) -> None:
    """Bind ``keyword`` to ``flag``'s ``value``; ``--attack-options`` giving it another value is an error (one
    of the two would be dropped while the record shows both)."""
    if keyword in kwargs and kwargs[keyword] != value:
        raise ValueError(f"--attack-options sets {keyword}={kwargs[keyword]!r}, which conflicts with {flag} "
                         f"{value}: give it once")
    kwargs[keyword] = value


def bind_attack(name: str, *, steps: int | None, distance: str | None, options: dict[str, Any],
                targeted: bool = False, levels: int | None = None) -> functools.partial[torch.Tensor]:
    """The attack ``name`` with its hyper-parameters bound; unknown names or options are errors, and so is an
    option that ``steps``, ``distance`` or ``levels`` also sets to another value.

    ``targeted`` is bound too (an attack that cannot run targeted is refused), so the attack always knows
    whether the labels it gets are targets. ``levels`` (the quantization of the verification) is bound to an
    attack that quantizes its iterates (ddn), so that it searches the grid its examples are verified on."""
    if name not in ATTACKS:
        raise ValueError(f"--attack must be one of {sorted(ATTACKS)}, got {name!r}")
    function = ATTACKS[name]
    parameters = inspect.signature(function).parameters
    kwargs = dict(options)
    if "targeted" in kwargs:
        raise ValueError("--attack-options must not set 'targeted': give --targeted")
    if steps is not None:
        bind_once(kwargs, "steps", steps, "--steps")
    if distance is not None:
        keyword = distance_keyword(function)
        if keyword is None:
            raise ValueError(f"--distance does not apply to attack {name!r}, which minimizes a fixed distance")
        allowed = list(NORMS) if keyword == "norm" else distance_names()
        if distance not in allowed:
            raise ValueError(f"--distance must be one of {allowed} for attack {name!r}, got {distance!r}")
        bind_once(kwargs, keyword, distance, "--distance")
    if levels is not None and "levels" in parameters:
        bind_once(kwargs, "levels", levels, "--levels")
    if "targeted" in parameters:
        kwargs["targeted"] = targeted
    elif targeted:
        raise ValueError(f"--targeted: attack {name!r} cannot run targeted")
    unknown = sorted(set(kwargs) - set(parameters))
    if unknown:
        raise ValueError(f"attack {name!r} takes no option(s) {unknown}; it takes {sorted(parameters)[3:]}")
    return functools.partial(function, **kwargs)


def minimized_distance(attack: functools.partial[torch.Tensor]) -> str:
    """The registry name of the distance the attack minimizes (bound, or its default): the report's distance."""
    keyword = distance_keyword(attack.func)
    if keyword is None:
        return "l2"
    chosen = attack.keywords.get(keyword, inspect.signature(attack.func).parameters[keyword].default)
    if not isinstance(chosen, str):
        raise ValueError(f"--attack-options: {keyword} must be a distance name for the report, got {chosen!r}")
    return chosen


def minimized_options(attack: functools.partial[torch.Tensor]) -> dict[str, Any]:
    """The registry options the attack binds to the distance it minimizes (``distance_options``, e.g. LPIPS's
    ``calibrated``): the report measures that distance with the same options."""
    if distance_keyword(attack.func) != "distance":
        return {}
    options = attack.keywords.get("distance_options") or {}
    if not isinstance(options, dict):
        raise ValueError(f"--attack-options: distance_options must be a JSON object, got {options!r}")
    return options


def check_distance(name: str, inputs: torch.Tensor, options: dict[str, Any], *, gradient: bool) -> None:
    """Build distance ``name`` with its ``options`` on one input: a distance that cannot run here (LPIPS without
    its ImageNet weights) or, with ``gradient`` (an attack that follows its gradient: alma, cw), one without a
    gradient fails now, in one line, before anything is written."""
    if name not in distance_names():
        raise ValueError(f"the attack's distance must be one of {distance_names()}, got {name!r}")
    try:
        bound = get_distance(name, **options)(inputs[:1])
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"--distance {name}: {error}") from error
    if gradient:
        check_has_gradient(bound, inputs[:1], name)


def summary_table(summary: dict[str, Any]) -> str:
    """The printed report: one metric per line."""
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.2f}%"

    lines = [
        ("samples", str(summary["n"])),
        ("clean accuracy", pct(summary["clean_accuracy"])),
        ("attack success rate", pct(summary["success_rate"])),
        (f"median {summary['distance']} (all)", f"{summary['median_distance']:.4f}"),
        (f"median {summary['distance']} (clean-correct)", f"{summary['median_distance_on_correct']:.4f}"
         if summary["median_distance_on_correct"] is not None else "n/a"),
        *[(f"robust accuracy at ε={eps}", pct(value)) for eps, value in summary["robust_accuracy"].items()],
        ("forwards / backwards per sample",
         f"{summary['forwards_per_sample']:.1f} / {summary['backwards_per_sample']:.1f}"),
        ("failed re-verification", str(summary["failed_verification"])),
        ("no adversarial (budget spent)", str(summary["no_adversarial"])),
        ("NaN/inf during the attack", str(summary["non_finite"])),
        ("margin never decreased", str(summary["stalled"])),
        ("sanity checks", sanity_line(summary.get("sanity"))),
        ("attack wall time", f"{summary['seconds']:.1f} s"),
    ]
    width = max(len(key) for key, _ in lines)
    return "\n".join(f"  {key.ljust(width)}  {value}" for key, value in lines)


def sanity_line(findings: list[dict[str, str]] | None) -> str:
    if findings is None:
        return "skipped (--no-checks)"
    return "passed" if not findings else "WARNING " + ", ".join(finding["check"] for finding in findings)


EXAMPLES = 8
"""Adversarial images kept for the example grid (the others are measured, not held: memory stays flat)."""
OUTPUTS = ("results.json", "samples.jsonl", "robust_accuracy.png", "examples.png", "trace.json", "trace.png")


def parse_options(text: str) -> dict[str, Any]:
    """``--attack-options``: a JSON object."""
    try:
        options = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"--attack-options must be a JSON object, got {text!r}") from error
    if not isinstance(options, dict):
        raise ValueError(f"--attack-options must be a JSON object, got {text!r}")
    return options


def distance_options_text(options: dict[str, Any] | None) -> str:
    """The distance's options in the printed report (nothing when it has none)."""
    return f" {json.dumps(options, sort_keys=True)}" if options else ""


def evaluated_lines(provenance: dict[str, Any]) -> list[str]:
    """The top of the printed report: what was evaluated (model, data, attack), from the run's record."""
    return [model_line(provenance["model"]), data_line(provenance["data"]),
            f"attack  {provenance['attack_name']}"
            f"{' targeted, targets ' + provenance['targets'] if provenance['targeted'] else ''}, distance "
            f"{provenance['distance']}{distance_options_text(provenance.get('distance_options'))}, "
            f"levels {provenance['levels']}, seed {provenance['seed']}"]


def run(args: argparse.Namespace) -> int:
    check_applicable(args)
    options = parse_options(args.attack_options)
    check_positive("--batch-size", args.batch_size)
    check_positive("--steps", args.steps)
    check_levels(args.levels)
    check_eps(args.eps)
    attack = bind_attack(args.attack, steps=args.steps, distance=args.distance, options=options,
                         targeted=args.targeted, levels=args.levels)
    if args.trace and not takes_callback(attack):
        raise ValueError(f"--trace: attack {args.attack!r} takes no callback, so there is nothing to trace; attacks "
                         f"that take one: {', '.join(traceable())}")
    trace = Trace() if args.trace else None
    traced = attack if trace is None else functools.partial(attack, callback=trace)
    distance = minimized_distance(attack)
    distance_options = minimized_options(attack)
    dataset, indices = load_data(args)
    process = start(args.device)
    (model,), (model_record,) = load_models([args.model], args, device=process.device)
    seen = for_model(dataset, args.model)
    outputs = check_compatible(model, seen, device=process.device)
    check_distance(distance, stack(seen, indices[:1])[0], distance_options,
                   gradient=distance_keyword(attack.func) == "distance")
    targets = targets_of(dataset, indices, outputs) if args.targeted else None
    out = Path(args.out or f"results/{safe_name(args.model)}-{args.attack}")
    measured = tuple(dict.fromkeys((*DISTANCES, distance)))
    # The samples are not in the record: run_attack checks each batch's members (a larger --n computes only the
    # missing samples).
    record = {
        "model": {**model_record, "outputs": outputs}, "data": seen.identity,
        "attack_name": args.attack, "attack": describe_attack(attack), "targeted": args.targeted,
        "targets": f"(y + 1) mod {outputs}" if args.targeted else None,
        "distance": distance, "distance_options": distance_options, "distances": list(measured),
        "levels": args.levels, "seed": args.seed,
        "batch_size": args.batch_size, "trace": args.trace,  # a trace covers every batch: traced runs apart
    }
    arguments = {k: v for k, v in vars(args).items() if k not in ("run", "given")}
    # Every process claims --out before writing to it (the first one's record is the others' check).
    provenance = claim_out(out, "attack", record)
    if process.rank == 0:
        remove_outputs(out, OUTPUTS)
    started = time.perf_counter()
    findings = []
    if args.checks and process.rank == 0:
        first, labels = stack(seen, indices[: args.batch_size])
        findings = check_evaluation(model, first.to(process.device), labels.to(process.device),
                                    indices=indices[: args.batch_size])
    positions = shard_positions(len(indices), args.batch_size, process)
    shard = run_attack(model, seen, None, traced, batch_size=args.batch_size, targeted=args.targeted,
                       targets=None if targets is None else targets[positions], levels=args.levels, seed=args.seed,
                       indices=indices[positions], distances=measured, distance_options={distance: distance_options},
                       # A trace sees only the batches that run: a traced run computes every batch again.
                       resume_dir=None if trace is not None else out / "batches",
                       progress=not args.no_progress and process.rank == 0,
                       checks=False, keep_adversarial=EXAMPLES)
    gathered = gather(shard, out / "shards", process, positions=positions, indices=indices)
    stop(process)
    if gathered is None:
        return 0
    result: AttackResult = gathered
    provenance["data"] = {**provenance["data"], "n": len(result), "indices_sha256": fingerprint_tensor(indices)}
    eps = tuple(args.eps) if args.eps else DEFAULT_EPS.get(distance, ())
    summary = result.summary(distance=distance, eps=eps)
    summary["total_seconds"] = time.perf_counter() - started
    summary["processes"] = process.world
    summary["sanity"] = [vars(finding) for finding in findings] if args.checks else None
    write_results(out, result, summary, arguments, environment(str(process.device), args.seed), provenance)
    title = f"{Path(args.model).name}: {args.attack}"
    plot_curves(out / "robust_accuracy.png", {args.attack: result.robust_distances(distance)}, distance=distance,
                title=title)
    classes = dataset.classes or [str(c) for c in range(outputs)]
    plot_examples(out / "examples.png", seen, result, classes=classes, distance=distance, count=EXAMPLES)
    print("\n".join(evaluated_lines(provenance)))
    print(summary_table(summary))
    print(f"wrote {out}/results.json, samples.jsonl, robust_accuracy.png, examples.png")
    if trace is not None:
        write_trace(out, trace, title=title)
        print(f"wrote {out}/trace.json, trace.png")
    return 0
