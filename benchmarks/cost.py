"""Cost: what the full objective adds to a training step, peak memory, and end-to-end overhead.

Per case, three training steps (forward + backward + AdamW step) on one fixed batch:

- ``full``: every task head, every edge, co-annotation ``soft`` and distribution matching in
  both directions (``Objective(..., co_annotation="soft", distribution_matching=True)``);
- ``mtl``: the same model, masked supervised losses only (plain multi-task learning);
- ``single``: the backbone with one head (the categorical task) and ``F.cross_entropy``.

Timing: ``torch.utils.benchmark.Timer.blocked_autorange`` (median time per step). The three
variants are measured one after the other, ``repeats`` times, in alternating order, in the
same process; each ratio is taken pair by pair within a repeat (``full / mtl`` of repeat i
uses the two medians of repeat i) and the median of those ratios is reported, so that load
from other processes affects numerator and denominator alike.

Threads: on CPU one torch thread by default (``--threads``). On the shared 2-core machine
these figures come from, two threads made a step's time jump by up to 30x from one
repeat to the next (OpenMP workers waiting on a core another process holds: 40 ms, then
1,300 ms, for the same step), which no pairing can undo; one thread only time-shares.
With one thread the backbone's share of a step is larger than with many, so the ratios
lean slightly in the method's favour; the GPU script measures the other extreme.

Memory: one subprocess per (case, variant). On CPU (Linux): the peak RSS is reset
(``/proc/self/clear_refs``) once model, batch and optimiser are built, three steps run,
and the delta is ``VmHWM - VmRSS before`` (gradients, AdamW state, activations, allocator
caching); without ``clear_refs``, ``getrusage`` max RSS before and after. On CUDA:
``torch.cuda.max_memory_allocated`` over the steps, minus what was allocated before.

End-to-end: one epoch of ``dmtl train`` (``dmtl.training.run.run_training``, Lightning) against
a hand-written loop (plain ``DataLoader`` over tensors, ``dmtl.core`` model + objective,
``torch.optim.AdamW`` with the same cosine schedule), same experiment, same batch size,
same number of steps, alternating, median of the repeats.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.common import (
    QUICK_DIR,
    REPO,
    RESULTS_DIR,
    command_line,
    hardware,
    median,
    now,
    write_result,
)
from dmtl.backbones import create_backbone
from dmtl.core.labels import PartialLabels
from dmtl.core.model import MultiTaskModel
from dmtl.core.objective import Objective
from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import BinarySetTask, CategoricalTask, Task

VARIANTS = ("full", "mtl", "single")
TARGETS = {"resnet18-112": 1.03, "celeba-heads": 1.10}
"""``full / mtl`` step-time ratio targets of the issue, per case."""
E2E_TARGET = 1.10


@dataclass
class CaseSpec:
    """A benchmark case: backbone, input and batch size, and which task set."""

    name: str
    title: str
    backbone: str
    channels: int
    image_size: int
    batch_size: int
    tasks: str  # fashion | affect | celeba | cub
    options: dict[str, Any] | None = None


CASES: dict[str, CaseSpec] = {
    "small_cnn-28": CaseSpec(
        "small_cnn-28", "(a) small_cnn, 28 px grey, batch 128, Fashion-MNIST tasks",
        "small_cnn", 1, 28, 128, "fashion"),
    "resnet18-112": CaseSpec(
        "resnet18-112", "(b) timm resnet18 (pretrained=False), 112 px RGB, batch 64, "
        "expressions -> AUs", "timm:resnet18", 3, 112, 64, "affect"),
    "celeba-heads": CaseSpec(
        "celeba-heads", "(c) CelebA-size heads: 10,177 identities + 40 attributes "
        "(random valid table), small_cnn 64 px RGB, batch 128",
        "small_cnn", 3, 64, 128, "celeba"),
    "cub-heads": CaseSpec(
        "cub-heads", "(d) CUB-size heads: 200 species x 312 attributes (random valid "
        "table), small_cnn 64 px RGB, batch 128", "small_cnn", 3, 64, 128, "cub"),
}


def quick_spec(spec: CaseSpec) -> CaseSpec:
    """A tiny version of a case for smoke runs."""
    return CaseSpec(spec.name, spec.title + " [quick: batch 8, 16 px]", spec.backbone,
                    spec.channels, 16, 8, spec.tasks, spec.options)


# --------------------------------------------------------------------------- set-up


def task_set(kind: str, generator: torch.Generator) -> tuple[list[Task], list[Relatedness],
                                                              list[list[str]]]:
    """Tasks, edges and the label groups of a batch (each sample labelled for one group)."""
    if kind == "fashion":
        from dmtl.data.builtin.fashion_mnist import (
            ATTRIBUTE_TABLE,
            ATTRIBUTES,
            CATEGORY,
            GROUP,
            GROUP_TABLE,
            PIXEL,
        )

        pixel_table = torch.rand(CATEGORY.num_classes, PIXEL.num_outputs, generator=generator)
        edges = [
            Relatedness(CATEGORY, GROUP, torch.as_tensor(GROUP_TABLE)),
            Relatedness(CATEGORY, ATTRIBUTES, torch.as_tensor(ATTRIBUTE_TABLE)),
            Relatedness(CATEGORY, PIXEL, pixel_table),
        ]
        return ([CATEGORY, GROUP, ATTRIBUTES, PIXEL], edges,
                [["category"], ["group"], ["attributes", "pixel"]])
    if kind == "affect":
        from dmtl.knowledge.affect import expression_au_relatedness

        edge = expression_au_relatedness()
        return [edge.source, edge.target], [edge], [[edge.source.name], [edge.target.name]]
    if kind in ("celeba", "cub"):
        classes, labels = (10177, 40) if kind == "celeba" else (200, 312)
        main = CategoricalTask("identity" if kind == "celeba" else "species",
                               [str(i) for i in range(classes)])
        attrs = BinarySetTask("attributes", [f"a{j}" for j in range(labels)])
        table = torch.rand(classes, labels, generator=generator)
        edge = Relatedness(main, attrs, table)
        return [main, attrs], [edge], [[main.name], [attrs.name]]
    raise ValueError(f"unknown task set {kind!r}")


def random_labels(tasks: Sequence[Task], groups: Sequence[Sequence[str]], n: int,
                  generator: torch.Generator) -> PartialLabels:
    """Random labels, samples split evenly among ``groups`` (disjoint annotation)."""
    owner = torch.arange(n) % len(groups)
    encoded: dict[str, Tensor] = {}
    for task in tasks:
        group = next(i for i, g in enumerate(groups) if task.name in g)
        mine = owner == group
        if isinstance(task, CategoricalTask):
            values = torch.randint(0, task.num_classes, (n,), generator=generator)
            encoded[task.name] = torch.where(mine, values, torch.full_like(values, -1))
        else:
            values = (torch.rand(n, task.num_outputs, generator=generator) < 0.5).float()
            encoded[task.name] = torch.where(mine[:, None], values, math.nan)
    return PartialLabels.from_encoded(tasks, encoded)


@dataclass
class Case:
    spec: CaseSpec
    tasks: list[Task]
    edges: list[Relatedness]
    x: Tensor
    labels: PartialLabels
    single_target: Tensor
    device: torch.device


def build_case(spec: CaseSpec, device: torch.device) -> Case:
    generator = torch.Generator().manual_seed(0)
    tasks, edges, groups = task_set(spec.tasks, generator)
    x = torch.randn(spec.batch_size, spec.channels, spec.image_size, spec.image_size,
                    generator=generator)
    labels = random_labels(tasks, groups, spec.batch_size, generator)
    main = tasks[0]
    assert isinstance(main, CategoricalTask)
    single = torch.randint(0, main.num_classes, (spec.batch_size,), generator=generator)
    return Case(spec, tasks, edges, x.to(device), labels.to(device), single.to(device), device)


def make_model(case: Case, tasks: Sequence[Task]) -> MultiTaskModel:
    torch.manual_seed(0)
    backbone, dim = create_backbone(case.spec.backbone, in_channels=case.spec.channels,
                                    image_size=case.spec.image_size,
                                    **(case.spec.options or {}))
    return MultiTaskModel(backbone, list(tasks), feature_dim=dim).to(case.device)


def make_step(case: Case, variant: str) -> Callable[[], None]:
    """A closure doing one forward + backward + AdamW step of ``variant``."""
    if variant == "single":
        main = case.tasks[0]
        model = make_model(case, [main])
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def single_step() -> None:
            optimiser.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(case.x)[main.name], case.single_target)
            loss.backward()
            optimiser.step()

        return single_step
    model = make_model(case, case.tasks)
    if variant == "full":
        objective = Objective(case.tasks, case.edges, co_annotation="soft",
                              distribution_matching=True)
    elif variant == "mtl":
        objective = Objective(case.tasks, case.edges)
    else:
        raise ValueError(variant)
    objective = objective.to(case.device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        loss, _ = objective(model(case.x), case.labels)
        loss.backward()
        optimiser.step()

    return step


# --------------------------------------------------------------------------- timing


def time_case(spec: CaseSpec, device: torch.device, repeats: int, min_run_time: float,
              threads: int) -> dict[str, Any]:
    """Median step time per variant and pair-by-pair ratios (see the module docstring)."""
    from torch.utils.benchmark import Timer

    case = build_case(spec, device)
    steps = {v: make_step(case, v) for v in VARIANTS}
    for step in steps.values():  # warm-up: first-call allocations, optimiser state
        for _ in range(2):
            step()
    per_repeat: list[dict[str, float]] = []
    for r in range(repeats):
        order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
        times: dict[str, float] = {}
        for variant in order:
            timer = Timer(stmt="step()", globals={"step": steps[variant]}, num_threads=threads,
                          label=spec.name, description=variant)
            measurement = timer.blocked_autorange(min_run_time=min_run_time)
            times[variant] = float(measurement.median)
        per_repeat.append(times)
        print(f"[cost] {spec.name} repeat {r + 1}/{repeats}: "
              + ", ".join(f"{v} {times[v] * 1e3:.1f} ms" for v in VARIANTS), flush=True)
    medians = {v: median([t[v] for t in per_repeat]) for v in VARIANTS}
    pairs = {"full/mtl": ("full", "mtl"), "full/single": ("full", "single"),
             "mtl/single": ("mtl", "single")}
    ratios: dict[str, Any] = {}
    for name, (a, b) in pairs.items():
        values = [t[a] / t[b] for t in per_repeat]
        ratios[name] = {"median": median(values), "min": min(values), "max": max(values),
                        "values": values}
    params = {v: _parameters(case, v) for v in ("mtl", "single")}
    return {
        "case": asdict(spec),
        "repeats": repeats,
        "min_run_time_s": min_run_time,
        "step_s": medians,
        "per_repeat_s": per_repeat,
        "ratios": ratios,
        "samples_per_s": {v: spec.batch_size / medians[v] for v in VARIANTS},
        "parameters": params,
        "target_full_over_mtl": TARGETS.get(spec.name),
    }


def _parameters(case: Case, variant: str) -> int:
    tasks = case.tasks if variant != "single" else case.tasks[:1]
    model = make_model(case, tasks)
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- memory


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _status_mib(field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` of this process from ``/proc/self/status``, MiB (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``): ``echo 5 > /proc/self/clear_refs``."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def memory_child(case_name: str, variant: str, device_name: str, quick: bool,
                 steps: int = 3) -> dict[str, Any]:
    """Run in a fresh process: peak memory of ``steps`` training steps of one variant."""
    device = torch.device(device_name)
    spec = quick_spec(CASES[case_name]) if quick else CASES[case_name]
    case = build_case(spec, device)
    step = make_step(case, variant)
    if device.type == "cuda":
        torch.cuda.synchronize()
        allocated = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        top = torch.cuda.max_memory_allocated()
        return {"method": "torch.cuda.max_memory_allocated", "before_mib": allocated / 2**20,
                "peak_mib": top / 2**20, "delta_mib": (top - allocated) / 2**20}
    rss = _status_mib("VmRSS")
    if rss is not None and _reset_peak_rss():
        # The peak of the steps alone: import and set-up peaks are forgotten.
        for _ in range(steps):
            step()
        hwm = _status_mib("VmHWM") or rss
        return {"method": "peak RSS (VmHWM after clear_refs) in a subprocess",
                "before_mib": rss, "peak_mib": hwm, "delta_mib": hwm - rss}
    before = _rss_mib()
    for _ in range(steps):
        step()
    peak = _rss_mib()
    return {"method": "getrusage max RSS in a subprocess", "before_mib": before,
            "peak_mib": peak, "delta_mib": peak - before}


def measure_memory(case_name: str, variant: str, device: str, threads: int,
                   quick: bool) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    argv = [sys.executable, "-m", "benchmarks.cost", "--memory-child", case_name, variant,
            "--device", device, "--threads", str(threads)]
    if quick:
        argv.append("--quick")
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or ["failed"]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------- end-to-end


def e2e_config(device: str, quick: bool) -> tuple[str, list[str]]:
    """The config of the end-to-end comparison: Fashion-MNIST if present, else digits."""
    from benchmarks.common import fashion_available, fashion_overrides

    common = ["trainer.max_epochs=1", "trainer.progress_bar=false",
              "method.co_annotation=soft", "method.distribution_matching=true",
              f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}", "trainer.devices=1"]
    if quick:
        return "configs/digits-scarce.yaml", [*common, "trainer.steps_per_epoch=5"]
    if fashion_available():
        extra = [] if device == "cuda" else ["sources.0.max_samples=12000"]
        return "configs/fashion-disjoint.yaml", [*common, *extra, *fashion_overrides()]
    return "configs/digits-scarce.yaml", common


def hand_loop(experiment: Any, steps: int, device: torch.device) -> dict[str, Any]:
    """A minimal PyTorch loop (no Lightning) training the same model on the same data."""
    from torch.utils.data import DataLoader, TensorDataset

    from dmtl.core.metrics import MultiTaskMetrics

    config = experiment.config
    tasks = experiment.tasks
    names = [t.name for t in tasks]

    def tensors(sources: Sequence[Any]) -> TensorDataset:
        xs = torch.stack([s[i].x for s in sources for i in range(len(s))])
        labels = [torch.from_numpy(np.concatenate([s.labels[n] for s in sources]))
                  for n in names]
        return TensorDataset(xs, *labels)

    train_set = tensors(experiment.train)
    test_set = tensors(experiment.test or experiment.val)
    start = time.perf_counter()
    torch.manual_seed(experiment.seed)
    in_shape = experiment.input_shape
    backbone, dim = create_backbone(
        config.backbone.name, in_channels=in_shape[0] if len(in_shape) == 3 else 1,
        image_size=in_shape[-1] if len(in_shape) == 3 else None, **config.backbone.options)
    model = MultiTaskModel(backbone, tasks, feature_dim=dim,
                           dropout=config.backbone.dropout).to(device)
    m = config.method
    objective = Objective(
        tasks, experiment.edges, task_weights=m.task_weights, co_annotation=m.co_annotation,
        lambda_ca=m.lambda_ca, ca_eps=m.ca_eps, ca_tau=m.ca_tau,
        hard_threshold=m.hard_threshold, distribution_matching=m.distribution_matching,
        dm_forward=m.dm_forward, dm_inverse=m.dm_inverse, lambda_dm=m.lambda_dm,
        dm_eps=m.dm_eps, dm_tau=m.dm_tau, stop_gradient=m.stop_gradient,
    ).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.optim.lr,
                                  weight_decay=config.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, steps) / steps)))
    loader = DataLoader(train_set, batch_size=config.trainer.batch_size, shuffle=True)
    built = time.perf_counter()
    done = 0
    model.train()
    while done < steps:
        for x, *encoded in loader:
            labels = PartialLabels.from_encoded(tasks, dict(zip(names, encoded, strict=True)))
            x, labels = x.to(device), labels.to(device)
            optimiser.zero_grad(set_to_none=True)
            loss, _ = objective(model(x), labels)
            loss.backward()
            optimiser.step()
            scheduler.step()
            done += 1
            if done >= steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    trained = time.perf_counter()
    metrics = MultiTaskMetrics(tasks).to(device)
    model.eval()
    with torch.no_grad():
        for x, *encoded in DataLoader(test_set, batch_size=config.trainer.eval_batch_size):
            labels = PartialLabels.from_encoded(tasks, dict(zip(names, encoded, strict=True)))
            metrics.update(model(x.to(device)), labels.to(device))
    values = metrics.compute_flat()
    end = time.perf_counter()
    primary = {f"{t.name}": values.get(f"{t.name}/accuracy") for t in tasks
               if isinstance(t, CategoricalTask)}
    return {"train_s": trained - built, "total_s": end - start, "steps": done,
            "metrics": {k: v for k, v in primary.items() if v is not None}}


def end_to_end(device: torch.device, repeats: int, threads: int, quick: bool) -> dict[str, Any]:
    from dmtl.config import load_config
    from dmtl.data.loaders import train_loader
    from dmtl.data.pipeline import build_experiment
    from dmtl.training.run import run_training

    config_path, overrides = e2e_config(device.type, quick)
    overrides = [*overrides, f"trainer.num_threads={threads}"]
    config = load_config(REPO / config_path, overrides)
    experiment = build_experiment(config)
    steps = len(train_loader(experiment))
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for r in range(repeats):
            order = ["dmtl", "hand"] if r % 2 == 0 else ["hand", "dmtl"]
            row: dict[str, float] = {}
            for which in order:
                if which == "dmtl":
                    start = time.perf_counter()
                    result = run_training(experiment, Path(scratch) / f"run{r}", overwrite=True,
                                          quiet=True, progress_bar=False)
                    row["dmtl_total_s"] = time.perf_counter() - start
                    row["dmtl_fit_s"] = result.wall_s
                    row["dmtl_steps"] = result.steps
                else:
                    torch.set_num_threads(threads)
                    hand = hand_loop(experiment, steps, device)
                    row["hand_train_s"] = hand["train_s"]
                    row["hand_total_s"] = hand["total_s"]
                    row["hand_steps"] = hand["steps"]
            print(f"[cost] end-to-end repeat {r + 1}/{repeats}: dmtl fit "
                  f"{row['dmtl_fit_s']:.2f} s, hand loop {row['hand_train_s']:.2f} s", flush=True)
            rows.append(row)
    fit = median([r["dmtl_fit_s"] for r in rows])
    loop = median([r["hand_train_s"] for r in rows])
    total_dmtl = median([r["dmtl_total_s"] for r in rows])
    total_hand = median([r["hand_total_s"] for r in rows])
    command = "dmtl train " + config_path + "".join(f" -s '{o}'" for o in overrides)
    return {
        "config": config_path,
        "overrides": overrides,
        "command": command,
        "batch_size": config.trainer.batch_size,
        "backbone": config.backbone.name,
        "train_samples": sum(len(s) for s in experiment.train),
        "steps": steps,
        "repeats": rows,
        "dmtl_fit_s": fit,
        "hand_train_s": loop,
        "ratio": fit / loop,
        "pair_ratios": [r["dmtl_fit_s"] / r["hand_train_s"] for r in rows],
        "dmtl_total_s": total_dmtl,
        "hand_total_s": total_hand,
        "ratio_total": total_dmtl / total_hand,
        "target": E2E_TARGET,
    }


# --------------------------------------------------------------------------- entry point


def run(results_dir: Path, command: str, *, quick: bool, device_name: str, threads: int,
        repeats: int | None, min_run_time: float | None, cases: Sequence[str] | None,
        memory: bool, e2e: bool, e2e_repeats: int | None) -> Path:
    device = torch.device(device_name)
    torch.set_num_threads(threads)
    repeats = repeats or (2 if quick else 7)
    min_run_time = min_run_time if min_run_time is not None else (0.01 if quick else 1.0)
    names = list(cases or CASES)
    started = now()
    results: list[dict[str, Any]] = []
    for name in names:
        spec = quick_spec(CASES[name]) if quick else CASES[name]
        entry = time_case(spec, device, repeats, min_run_time, threads)
        entry["memory"] = {}
        if memory and (not quick or name == names[0]):
            for variant in VARIANTS:
                entry["memory"][variant] = measure_memory(name, variant, device_name, threads,
                                                          quick)
            print(f"[cost] {name} memory: " + ", ".join(
                f"{v} {m.get('delta_mib', float('nan')):.0f} MiB"
                for v, m in entry["memory"].items()), flush=True)
        results.append(entry)
    document: dict[str, Any] = {
        "started": started,
        "device": device_name,
        "threads": threads,
        "cases": results,
        "hardware": hardware(None if device.type == "cuda" else "cpu"),
    }
    if e2e:
        document["end_to_end"] = end_to_end(device, e2e_repeats or (1 if quick else 5),
                                            threads, quick)
    name = "cost" if device.type == "cpu" else "gpu-cost"
    return write_result(results_dir, name, document, command, quick)


def main(argv: Sequence[str] | None = None, results_dir: Path | None = None) -> Path | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks cost")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: 1 on CPU, see the module docstring; "
                        "the usable cores on CUDA)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--min-run-time", type=float, default=None,
                        help="seconds per blocked_autorange measurement")
    parser.add_argument("--cases", nargs="+", choices=list(CASES))
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-e2e", action="store_true")
    parser.add_argument("--e2e-repeats", type=int, default=None)
    parser.add_argument("--memory-child", nargs=2, metavar=("CASE", "VARIANT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from benchmarks.common import usable_cores

    threads = args.threads or (usable_cores() if args.device.startswith("cuda") else 1)
    if args.memory_child:
        torch.set_num_threads(threads)
        case_name, variant = args.memory_child
        print(json.dumps(memory_child(case_name, variant, args.device, args.quick)))
        return None
    out = args.results or results_dir or (QUICK_DIR if args.quick else RESULTS_DIR)
    return run(out, command_line("cost", argv), quick=args.quick, device_name=args.device,
               threads=threads, repeats=args.repeats, min_run_time=args.min_run_time,
               cases=args.cases, memory=not args.no_memory, e2e=not args.no_e2e,
               e2e_repeats=args.e2e_repeats)


if __name__ == "__main__":
    main()
