"""Cost: what the full objective adds to a training step, peak memory, and end-to-end overhead.

Per case, three training steps (forward + backward + AdamW step) on one fixed batch:

- ``full``: every task head, every edge, co-annotation ``soft`` and distribution matching in
  both directions (``Objective(..., co_annotation="soft", distribution_matching=True)``);
- ``mtl``: the same model, masked supervised losses only (plain multi-task learning);
- ``single``: the backbone with one head (the categorical task) and ``F.cross_entropy``;
- ``upgrad``: ``full`` with its per-task losses (``Objective.task_losses``) aggregated by
  TorchJD's UPGrad at the shared features (:func:`dmtl.core.aggregation.backward_tasks`,
  as ``method.aggregator: upgrad`` trains), against ``full``'s plain sum: ``upgrad/full``.

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

End-to-end (CPU): the workload of a comparison with LibMTL, two tasks of Fashion-MNIST
(12,000 training images, category + attributes, all labelled; digits without the
dataset), an MLP 784-256-128 with two linear heads, batch 64, one thread.

- ``end_to_end``: ``dmtl train`` (``run_training``, Lightning, plain multi-task learning) on
  the workload written as user data (``x.npy`` + index manifest), against a minimal PyTorch
  loop with its own data path (``TensorDataset`` + ``DataLoader(shuffle=True)``, CE + BCE,
  ``torch.optim.AdamW(fused=True)`` as dmtl's, with the same cosine schedule), run as a
  script without Lightning runs it: without the ``PYTORCH_NVML_BASED_CUDA_CHECK``
  variable that ``import lightning`` sets. Time per epoch in steady state:
  from one epoch's start to the next, median of the epochs after the first; alternating
  order, the ratio taken pair by pair. Also: CPU seconds to load one epoch's batches
  through each data path.
- ``objective_step``: one step with dmtl's masked objective against plain CE + BCE on the
  same network, batch and optimiser (paired ``blocked_autorange`` timings).
- ``demo_run``: seconds per run of the demo's config (``mtl+ca+dm``), as a study runs it.

Architectures (``--architectures``, merged into an existing ``cost.json``): one ``full``
step (co-annotation + distribution matching, AdamW) of each ``architecture`` (branches,
MMoE, PLE; ``config.architecture``) against the same step of the shared model, on the
demo's network (mlp 256-128, 8 px digits, batch 64, the Fashion task set) and on the
small_cnn case; paired ``blocked_autorange`` medians, alternating order, ratio per repeat.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
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

VARIANTS = ("full", "mtl", "single", "upgrad")
TARGETS = {"resnet18-112": 1.03, "celeba-heads": 1.10}
"""``full / mtl`` step-time ratio targets of the issue, per case."""
AGGREGATOR_TARGETS = {"resnet18-112": 1.30}
"""``upgrad / full`` (aggregated / summed gradients) step-time ratio targets, per case."""
RATIOS = {"full/mtl": ("full", "mtl"), "full/single": ("full", "single"),
          "mtl/single": ("mtl", "single"), "upgrad/full": ("upgrad", "full")}
"""Ratios reported per case: numerator and denominator variants."""
E2E_TARGET = 1.10
"""One epoch of ``dmtl train`` / one epoch of a minimal PyTorch loop, same workload."""
OBJECTIVE_TARGET = 1.15
"""A step with dmtl's masked objective / a step with plain CE + BCE."""


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
    if variant in ("full", "upgrad"):
        objective = Objective(case.tasks, case.edges, co_annotation="soft",
                              distribution_matching=True)
    elif variant == "mtl":
        objective = Objective(case.tasks, case.edges)
    else:
        raise ValueError(variant)
    objective = objective.to(case.device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    if variant == "upgrad":
        return _aggregated_step(case, model, objective, optimiser)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        loss, _ = objective(model(case.x), case.labels)
        loss.backward()
        optimiser.step()

    return step


def _aggregated_step(case: Case, model: MultiTaskModel, objective: Objective,
                     optimiser: torch.optim.Optimizer) -> Callable[[], None]:
    """One step with the per-task losses aggregated by UPGrad at the shared features."""
    from dmtl.core.aggregation import backward_tasks, build_aggregator

    aggregator = build_aggregator("upgrad")

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        features = model.features(case.x)
        losses = objective.task_losses(model.heads_forward(features), case.labels)
        backward_tasks(losses, features, aggregator, model.backbone, model.heads)
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
    ratios: dict[str, Any] = {}
    for name, (a, b) in RATIOS.items():
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
        "target_upgrad_over_full": AGGREGATOR_TARGETS.get(spec.name),
    }


def _parameters(case: Case, variant: str) -> int:
    tasks = case.tasks if variant != "single" else case.tasks[:1]
    model = make_model(case, tasks)
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- architectures

ARCHITECTURES: dict[str, dict[str, Any]] = {
    "shared": {"name": "shared"},
    "branch@1": {"name": "branch", "options": {"branches": [{"tasks": ["<last>"], "at": 1}]}},
    "branch@0": {"name": "branch", "options": {"branches": [{"tasks": ["<last>"], "at": 0}]}},
    "mmoe": {"name": "mmoe", "options": {}},
    "ple": {"name": "ple", "options": {}},
}
"""Each architecture measured (``<last>``: the case's last task leaves the trunk)."""
ARCHITECTURE_CASES: dict[str, CaseSpec] = {
    "mlp-digits": CaseSpec("mlp-digits", "mlp 256-128, 8 px grey, batch 64 (the demo's net)",
                           "mlp", 1, 8, 64, "fashion", {"hidden": (256, 128)}),
    "small_cnn-28": CASES["small_cnn-28"],
}


def architecture_step(case: Case, architecture: dict[str, Any]) -> Callable[[], None]:
    """One ``full`` step of the model ``config.architecture`` builds."""
    from dmtl.build.architecture import build_architecture
    from dmtl.config import Config

    last = case.tasks[-1].name
    spec = json.loads(json.dumps(architecture).replace("<last>", last))
    config = Config.model_validate({"sources": [{"name": "d", "builtin": "digits"}],
                                    "backbone": {"name": case.spec.backbone},
                                    "architecture": spec})
    torch.manual_seed(0)
    shape = (case.spec.channels, case.spec.image_size, case.spec.image_size)
    backbone, dim = create_backbone(case.spec.backbone, in_channels=case.spec.channels,
                                    image_size=case.spec.image_size,
                                    **(case.spec.options or {}))
    trunk, neck = build_architecture(config, backbone, dim, [t.name for t in case.tasks], shape)
    model = MultiTaskModel(trunk, case.tasks, feature_dim=dim, neck=neck).to(case.device)
    objective = Objective(case.tasks, case.edges, co_annotation="soft",
                          distribution_matching=True).to(case.device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        loss, _ = objective(model(case.x), case.labels)
        loss.backward()
        optimiser.step()

    step.parameters = sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]
    return step


def time_architectures(spec: CaseSpec, device: torch.device, repeats: int,
                       min_run_time: float, threads: int) -> dict[str, Any]:
    """Median step time per architecture and its ratio to ``shared``, pair by pair."""
    from torch.utils.benchmark import Timer

    case = build_case(spec, device)
    steps = {name: architecture_step(case, a) for name, a in ARCHITECTURES.items()}
    for step in steps.values():
        for _ in range(2):
            step()
    names = list(steps)
    per_repeat: list[dict[str, float]] = []
    for r in range(repeats):
        times: dict[str, float] = {}
        for name in names if r % 2 == 0 else list(reversed(names)):
            timer = Timer(stmt="step()", globals={"step": steps[name]}, num_threads=threads)
            times[name] = float(timer.blocked_autorange(min_run_time=min_run_time).median)
        per_repeat.append(times)
        print(f"[cost] architectures {spec.name} repeat {r + 1}/{repeats}: "
              + ", ".join(f"{n} {times[n] * 1e3:.2f} ms" for n in names), flush=True)
    ratios = {n: median([t[n] / t["shared"] for t in per_repeat]) for n in names}
    return {"case": asdict(spec), "repeats": repeats, "min_run_time_s": min_run_time,
            "step_s": {n: median([t[n] for t in per_repeat]) for n in names},
            "ratio_to_shared": ratios, "per_repeat_s": per_repeat,
            "parameters": {n: getattr(steps[n], "parameters", None) for n in names},
            "load": os.getloadavg()}


def run_architectures(results_dir: Path, command: str, *, quick: bool, threads: int,
                      repeats: int | None, min_run_time: float | None) -> Path:
    """Measure :func:`time_architectures` and merge it into ``cost.json`` (``architectures``)."""
    torch.set_num_threads(threads)
    repeats = repeats or (2 if quick else 5)
    min_run_time = min_run_time if min_run_time is not None else (0.01 if quick else 0.5)
    cases = [time_architectures(quick_spec(s) if quick else s, torch.device("cpu"), repeats,
                                min_run_time, threads) for s in ARCHITECTURE_CASES.values()]
    path = results_dir / "cost.json"
    document = json.loads(path.read_text()) if path.is_file() else {}
    payload = {k: v for k, v in document.items()
               if k not in ("schema", "name", "command", "quick", "finished")}
    payload["architectures"] = {"command": command, "started": now(), "threads": threads,
                                "cases": cases}
    return write_result(results_dir, "cost", payload, document.get("command", command),
                        bool(document.get("quick", quick)))


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


@dataclass
class Workload:
    """Two tasks, fully labelled, in memory: ``x`` ``(N, 1, H, W)`` float32, one categorical
    and one binary-set task (Fashion-MNIST category + attributes, else digits digit + shape)."""

    name: str
    x: np.ndarray
    category: np.ndarray
    attributes: np.ndarray
    tasks: list[Task]
    train: int


def e2e_workload(quick: bool) -> Workload:
    """12,000 Fashion-MNIST training images (+ 2,000 to evaluate) if present, else digits."""
    from benchmarks.common import fashion_available, fashion_dir
    from dmtl.data.builtin import load_builtin

    if fashion_available() and not quick:
        data = load_builtin("fashion_mnist", root=fashion_dir(), splits=("train",), limit=14000)
        first, second, train = "category", "attributes", 12000
    else:
        data = load_builtin("digits")
        first, second, train = "digit", "shape", 1400 if not quick else 256
    tasks = [data.task(first), data.task(second)]
    return Workload(data.name, np.ascontiguousarray(data.inputs, dtype=np.float32),
                    data.labels[first].astype(np.int64),
                    data.labels[second].astype(np.float32), tasks, train)


def write_workload(work: Workload, folder: Path, epochs: int, threads: int) -> Path:
    """The workload as user data (``x.npy`` + index manifest) and a config; its path."""
    import pandas as pd
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "x.npy", work.x)
    category, attributes = work.tasks
    frame = pd.DataFrame({"index": np.arange(len(work.x)),
                          "split": np.where(np.arange(len(work.x)) < work.train, "train", "test"),
                          category.name: np.asarray(category.names)[work.category]})
    for j, label in enumerate(attributes.names):
        frame[f"{attributes.name}/{label}"] = work.attributes[:, j].astype(int)
    frame.to_csv(folder / "manifest.csv", index=False)
    config = {
        "name": f"cost-e2e-{work.name}",
        "tasks": [{"name": category.name, "type": "categorical", "classes": list(category.names)},
                  {"name": attributes.name, "type": "binary_set",
                   "labels": list(attributes.names)}],
        "sources": [{"name": work.name, "manifest": "manifest.csv", "array": "x.npy",
                     "val_split": None}],
        "backbone": {"name": "mlp", "options": {"hidden": [256, 128]}},
        "optim": {"name": "adamw", "lr": 0.001, "weight_decay": 0.0001, "schedule": "cosine"},
        "trainer": {"max_epochs": epochs, "batch_size": 64, "num_threads": threads,
                    "progress_bar": False, "accelerator": "cpu", "devices": 1},
        "output": {"dir": str(folder / "run")},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def epoch_timer(clock: EpochClock) -> type:
    """A Lightning callback class that ticks ``clock`` at each epoch's start and at the end."""
    import lightning.pytorch as pl

    class Timer(pl.Callback):
        def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            clock.tick()

        def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            clock.tick()

    return Timer


class EpochClock:
    """Wall and CPU seconds of each epoch: from one epoch's start to the next (or the end)."""

    def __init__(self) -> None:
        self.starts: list[tuple[float, float]] = []
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def tick(self) -> None:
        now = (time.perf_counter(), time.process_time())
        if self.starts:
            self.wall.append(now[0] - self.starts[-1][0])
            self.cpu.append(now[1] - self.starts[-1][1])
        self.starts.append(now)

    def steady(self) -> tuple[float, float]:
        """Median wall and CPU seconds of the epochs after the first (warm-up)."""
        later = slice(1, None) if len(self.wall) > 1 else slice(None)
        return median(self.wall[later]), median(self.cpu[later])


def dmtl_epochs(config_path: Path, out: Path) -> dict[str, Any]:
    """``dmtl train`` (``run_training``) on the workload; its epochs timed by a callback."""

    from dmtl.build.data import build_experiment
    from dmtl.config import load_config
    from dmtl.training.quiet import quiet_lightning
    from dmtl.training.run import run_training

    clock = EpochClock()
    Timer = epoch_timer(clock)

    experiment = build_experiment(load_config(config_path))
    start = time.perf_counter()
    with quiet_lightning():
        result = run_training(experiment, out, overwrite=True, quiet=True, progress_bar=False,
                              callbacks=[Timer()])
    wall, cpu = clock.steady()
    return {"epoch_s": wall, "epoch_cpu_s": cpu, "fit_s": result.wall_s,
            "total_s": time.perf_counter() - start, "steps": result.steps,
            "metrics": {k: v for k, v in result.metrics.items() if k.count("/") == 1}}


class PlainMTL(torch.nn.Module):
    """The same MLP as dmtl's ``mlp`` backbone (784-256-128, ReLU) with two linear heads."""

    def __init__(self, inputs: int, classes: int, labels: int) -> None:
        super().__init__()
        self.backbone = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(inputs, 256), torch.nn.ReLU(inplace=True),
            torch.nn.Linear(256, 128), torch.nn.ReLU(inplace=True))
        self.category = torch.nn.Linear(128, classes)
        self.attributes = torch.nn.Linear(128, labels)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.backbone(x)
        return self.category(features), self.attributes(features)


def plain_loss(logits: tuple[Tensor, Tensor], category: Tensor, attributes: Tensor) -> Tensor:
    """``CE(category) + BCE(attributes)``, both means over the batch (everything labelled)."""
    return (F.cross_entropy(logits[0], category)
            + F.binary_cross_entropy_with_logits(logits[1], attributes))


def hand_epochs(work: Workload, epochs: int, seed: int = 0) -> dict[str, Any]:
    """A minimal PyTorch loop: ``TensorDataset`` + ``DataLoader(shuffle=True)``, CE + BCE,
    ``torch.optim.AdamW(fused=True)`` with the same cosine schedule, per step, as dmtl;
    as a script that does not import Lightning runs it (:func:`without_lightning_env`)."""
    with without_lightning_env():
        return _hand_epochs(work, epochs, seed)


@contextlib.contextmanager
def without_lightning_env() -> Iterator[None]:
    """The process environment as it was before ``import lightning`` set
    ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (which makes every ``torch.cuda.is_available()``,
    hence every Adam step, ask NVML); restored afterwards."""
    saved = os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = saved


def _hand_epochs(work: Workload, epochs: int, seed: int) -> dict[str, Any]:
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    n = work.train
    data = TensorDataset(torch.from_numpy(work.x[:n]), torch.from_numpy(work.category[:n]),
                         torch.from_numpy(work.attributes[:n]))
    loader = DataLoader(data, batch_size=64, shuffle=True)
    model = PlainMTL(int(np.prod(work.x.shape[1:])), work.tasks[0].num_outputs,
                     work.tasks[1].num_outputs)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4, fused=True)
    total = epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))
    clock = EpochClock()
    steps = 0
    for _ in range(epochs):
        clock.tick()
        for x, category, attributes in loader:
            optimiser.zero_grad(set_to_none=True)
            plain_loss(model(x), category, attributes).backward()
            optimiser.step()
            scheduler.step()
            steps += 1
    clock.tick()
    wall, cpu = clock.steady()
    return {"epoch_s": wall, "epoch_cpu_s": cpu, "steps": steps}


def lightning_epochs(work: Workload, epochs: int, seed: int = 0) -> dict[str, Any]:
    """Lightning's own floor: the hand loop's model, loss, ``DataLoader``, AdamW and schedule
    in a ``LightningModule`` fitted by a bare ``Trainer`` (no logger, checkpoint, progress
    bar or validation; dmtl's :class:`~dmtl.training.callbacks.CheapCudaChecks`). What
    Lightning's loop costs here is the part of dmtl's epoch that dmtl cannot remove."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from dmtl.training.callbacks import CheapCudaChecks
    from dmtl.training.quiet import quiet_lightning

    torch.manual_seed(seed)
    n = work.train
    loader = DataLoader(TensorDataset(torch.from_numpy(work.x[:n]),
                                      torch.from_numpy(work.category[:n]),
                                      torch.from_numpy(work.attributes[:n])),
                        batch_size=64, shuffle=True)
    total = epochs * len(loader)

    class Plain(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = PlainMTL(int(np.prod(work.x.shape[1:])), work.tasks[0].num_outputs,
                                work.tasks[1].num_outputs)

        def training_step(self, batch: tuple[Tensor, Tensor, Tensor], index: int) -> Tensor:
            return plain_loss(self.net(batch[0]), batch[1], batch[2])

        def configure_optimizers(self) -> Any:
            optimiser = torch.optim.AdamW(self.parameters(), lr=1e-3, weight_decay=1e-4,
                                          fused=True)
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimiser, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))
            return {"optimizer": optimiser,
                    "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    clock = EpochClock()
    Timer = epoch_timer(clock)

    with quiet_lightning():
        trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0,
                             callbacks=[Timer(), CheapCudaChecks()])
        trainer.fit(Plain(), loader)
    wall, cpu = clock.steady()
    return {"epoch_s": wall, "epoch_cpu_s": cpu, "steps": int(trainer.global_step)}


def data_epochs(work: Workload, config_path: Path) -> dict[str, float]:
    """CPU seconds to load one epoch's batches: dmtl's train loader vs a plain DataLoader."""
    from torch.utils.data import DataLoader, TensorDataset

    from dmtl.build.data import build_experiment
    from dmtl.build.loaders import train_loader
    from dmtl.config import load_config

    loader = train_loader(build_experiment(load_config(config_path)), rank=0, world_size=1)
    n = work.train
    plain = DataLoader(TensorDataset(torch.from_numpy(work.x[:n]),
                                     torch.from_numpy(work.category[:n]),
                                     torch.from_numpy(work.attributes[:n])),
                       batch_size=64, shuffle=True)
    out: dict[str, float] = {}
    for name, batches in (("dmtl_load_s", loader), ("hand_load_s", plain)):
        best = math.inf
        for _ in range(3):
            start = time.process_time()
            for _batch in batches:
                pass
            best = min(best, time.process_time() - start)
        out[name] = best
    return out


def objective_steps(work: Workload, repeats: int, min_run_time: float,
                    threads: int) -> dict[str, Any]:
    """One step (forward, loss, backward, AdamW) with dmtl's masked objective against plain
    CE + BCE: the same network, batch and optimiser; paired timings, as for the cases."""
    from torch.utils.benchmark import Timer

    generator = torch.Generator().manual_seed(0)
    rows = torch.randperm(work.train, generator=generator)[:64]
    x = torch.from_numpy(work.x[rows.numpy()])
    category = torch.from_numpy(work.category[rows.numpy()])
    attributes = torch.from_numpy(work.attributes[rows.numpy()])
    tasks = work.tasks
    labels = PartialLabels.from_encoded(tasks, {tasks[0].name: category,
                                                tasks[1].name: attributes})
    torch.manual_seed(0)
    plain = PlainMTL(int(np.prod(work.x.shape[1:])), tasks[0].num_outputs, tasks[1].num_outputs)
    model = MultiTaskModel(plain.backbone, tasks, feature_dim=128)
    model.load_state_dict({**{f"heads.{tasks[0].name}.{k}": v
                              for k, v in plain.category.state_dict().items()},
                           **{f"heads.{tasks[1].name}.{k}": v
                              for k, v in plain.attributes.state_dict().items()},
                           **{f"backbone.{k}": v for k, v in plain.backbone.state_dict().items()}})
    objective = Objective(tasks, [])
    optimisers = {"dmtl": torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True),
                  "plain": torch.optim.AdamW(plain.parameters(), lr=1e-3, fused=True)}

    def dmtl_step() -> None:
        optimisers["dmtl"].zero_grad(set_to_none=True)
        objective(model(x), labels)[0].backward()
        optimisers["dmtl"].step()

    def plain_step() -> None:
        optimisers["plain"].zero_grad(set_to_none=True)
        plain_loss(plain(x), category, attributes).backward()
        optimisers["plain"].step()

    steps = {"dmtl": dmtl_step, "plain": plain_step}
    for step in steps.values():
        for _ in range(3):
            step()
    per_repeat: list[dict[str, float]] = []
    for r in range(repeats):
        order = ["dmtl", "plain"] if r % 2 == 0 else ["plain", "dmtl"]
        times = {}
        for name in order:
            timer = Timer(stmt="step()", globals={"step": steps[name]}, num_threads=threads)
            times[name] = float(timer.blocked_autorange(min_run_time=min_run_time).median)
        per_repeat.append(times)
    ratios = [t["dmtl"] / t["plain"] for t in per_repeat]
    return {"dmtl_step_s": median([t["dmtl"] for t in per_repeat]),
            "plain_step_s": median([t["plain"] for t in per_repeat]),
            "ratio": median(ratios), "pair_ratios": ratios, "target": OBJECTIVE_TARGET,
            "batch_size": 64}


def end_to_end(device: torch.device, repeats: int, threads: int, quick: bool) -> dict[str, Any]:
    """One epoch of ``dmtl train`` (plain MTL) against a minimal PyTorch loop on the same
    two-task MLP workload, each with its own data path; see the report for the protocol."""
    epochs = 2 if quick else 3
    work = e2e_workload(quick)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        config_path = write_workload(work, Path(scratch) / "data", epochs, threads)
        for r in range(repeats):
            names = ["dmtl", "hand", "lightning"]
            order = names[r % 3:] + names[:r % 3]  # each goes first in turn
            row: dict[str, Any] = {}
            for which in order:
                torch.set_num_threads(threads)
                if which == "dmtl":
                    row["dmtl"] = dmtl_epochs(config_path, Path(scratch) / f"run{r}")
                elif which == "hand":
                    row["hand"] = hand_epochs(work, epochs)
                else:
                    row["lightning"] = lightning_epochs(work, epochs)
            row["ratio"] = row["dmtl"]["epoch_s"] / row["hand"]["epoch_s"]
            print(f"[cost] end-to-end repeat {r + 1}/{repeats}: dmtl epoch "
                  f"{row['dmtl']['epoch_s']:.3f} s, hand loop {row['hand']['epoch_s']:.3f} s, "
                  f"bare Lightning {row['lightning']['epoch_s']:.3f} s (CPU: "
                  f"{row['dmtl']['epoch_cpu_s']:.3f}, {row['hand']['epoch_cpu_s']:.3f}, "
                  f"{row['lightning']['epoch_cpu_s']:.3f})", flush=True)
            rows.append(row)
        data = data_epochs(work, config_path)
    first, second = work.tasks
    return {
        "workload": f"{work.name}: {work.train:,} training images {tuple(work.x.shape[1:])}, "
                    f"tasks {first.name} ({first.num_outputs} classes) + {second.name} "
                    f"({second.num_outputs} labels), all labelled",
        "command": "dmtl train CONFIG (benchmarks/cost.py: write_workload)",
        "backbone": "mlp 256-128", "batch_size": 64, "epochs": epochs,
        "train_samples": work.train, "steps": rows[0]["dmtl"]["steps"],
        "steps_per_epoch": rows[0]["dmtl"]["steps"] // epochs,
        "repeats": rows,
        "dmtl_epoch_s": median([r["dmtl"]["epoch_s"] for r in rows]),
        "hand_epoch_s": median([r["hand"]["epoch_s"] for r in rows]),
        "dmtl_epoch_cpu_s": median([r["dmtl"]["epoch_cpu_s"] for r in rows]),
        "hand_epoch_cpu_s": median([r["hand"]["epoch_cpu_s"] for r in rows]),
        "lightning_epoch_s": median([r["lightning"]["epoch_s"] for r in rows]),
        "lightning_epoch_cpu_s": median([r["lightning"]["epoch_cpu_s"] for r in rows]),
        "lightning_ratio": median([r["lightning"]["epoch_s"] / r["hand"]["epoch_s"]
                                   for r in rows]),
        "dmtl_over_lightning": median([r["dmtl"]["epoch_s"] / r["lightning"]["epoch_s"]
                                       for r in rows]),
        "ratio": median([r["ratio"] for r in rows]),
        "pair_ratios": [r["ratio"] for r in rows],
        "dmtl_fit_s": median([r["dmtl"]["fit_s"] for r in rows]),
        **data,
        "target": E2E_TARGET,
    }


def demo_runs(repeats: int, quick: bool) -> dict[str, Any]:
    """Seconds per run of the demo's config (``mtl+ca+dm``, one thread), as a study runs it."""
    from dmtl.build.data import build_experiment
    from dmtl.config import load_config
    from dmtl.study.study import variant_config
    from dmtl.training.quiet import quiet_lightning
    from dmtl.training.run import run_training

    overrides = ["trainer.num_threads=1", "trainer.accelerator=cpu"]
    if quick:
        overrides.append("trainer.max_epochs=1")
    config = load_config(REPO / "src/dmtl/configs/digits-demo.yaml", overrides)
    experiment = build_experiment(variant_config(config, "mtl+ca+dm"))
    walls, cpus, steps = [], [], 0
    with tempfile.TemporaryDirectory() as scratch, quiet_lightning():
        for r in range(repeats):
            start, cpu = time.perf_counter(), time.process_time()
            result = run_training(experiment, Path(scratch) / f"r{r}", quiet=True,
                                  progress_bar=False)
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
            steps = result.steps
    return {"config": "src/dmtl/configs/digits-demo.yaml", "variant": "mtl+ca+dm",
            "overrides": overrides, "steps": steps, "run_s": median(walls),
            "run_cpu_s": median(cpus), "runs_s": walls}


# --------------------------------------------------------------------------- entry point


def run(results_dir: Path, command: str, *, quick: bool, device_name: str, threads: int,
        repeats: int | None, min_run_time: float | None, cases: Sequence[str] | None,
        memory: bool, e2e: bool, e2e_repeats: int | None, demo: bool = True) -> Path:
    device = torch.device(device_name)
    torch.set_num_threads(threads)
    repeats = repeats or (2 if quick else 7)
    min_run_time = min_run_time if min_run_time is not None else (0.01 if quick else 1.0)
    names = list(CASES if cases is None else cases)
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
    if e2e and device.type == "cpu":  # the end-to-end workloads are CPU comparisons
        e2e_repeats = e2e_repeats or (1 if quick else 5)
        document["end_to_end"] = end_to_end(device, e2e_repeats, threads, quick)
        document["objective_step"] = objective_steps(
            e2e_workload(quick), repeats, min_run_time, threads)
        if demo:
            document["demo_run"] = demo_runs(1 if quick else 3, quick)
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
    parser.add_argument("--cases", nargs="*", choices=list(CASES),
                        help="the cases to time (none: only the end-to-end part)")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-e2e", action="store_true")
    parser.add_argument("--e2e-repeats", type=int, default=None)
    parser.add_argument("--no-demo", action="store_true", help="skip the demo-run timing")
    parser.add_argument("--memory-child", nargs=2, metavar=("CASE", "VARIANT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--architectures", action="store_true",
                        help="only the per-step cost of each architecture vs the shared "
                        "model, merged into an existing cost.json")
    args = parser.parse_args(argv)
    from benchmarks.common import usable_cores

    threads = args.threads or (usable_cores() if args.device.startswith("cuda") else 1)
    if args.memory_child:
        torch.set_num_threads(threads)
        case_name, variant = args.memory_child
        print(json.dumps(memory_child(case_name, variant, args.device, args.quick)))
        return None
    out = args.results or results_dir or (QUICK_DIR if args.quick else RESULTS_DIR)
    if args.architectures:
        return run_architectures(out, command_line("cost", argv), quick=args.quick,
                                 threads=threads, repeats=args.repeats,
                                 min_run_time=args.min_run_time)
    return run(out, command_line("cost", argv), quick=args.quick, device_name=args.device,
               threads=threads, repeats=args.repeats, min_run_time=args.min_run_time,
               cases=args.cases, memory=not args.no_memory, e2e=not args.no_e2e,
               e2e_repeats=args.e2e_repeats, demo=not args.no_demo)


if __name__ == "__main__":
    main()
