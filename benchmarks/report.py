"""Build ``docs/benchmarks.md`` (and its plots) from the JSON result files present.

Nothing here measures anything: every figure comes from ``benchmarks/results/*.json``, so
``python -m benchmarks report`` can be re-run at any time, and a section re-run alone
updates only its part. A section without a result file says how to produce it. The prose
is in ``benchmarks/report_text.md`` (blocks filled in with ``str.format``); tables are
pandas DataFrames rendered by :func:`dmtl.study.report.markdown_table`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.common import now, read_results
from benchmarks.faces import faces_section
from dmtl.study.report import markdown_table

VARIANT_ORDER = ("single_task", "mtl", "mtl+ca", "mtl+dm", "mtl+ca+dm")
TEXT_FILE = Path(__file__).with_name("report_text.md")

Doc = dict[str, Any]


# --------------------------------------------------------------------------- helpers


@cache
def _blocks() -> dict[str, str]:
    """The blocks of :data:`TEXT_FILE`: ``@@ name`` lines start them (``@@`` alone: comments)."""
    blocks: dict[str, list[str]] = {}
    current: list[str] = []
    for line in TEXT_FILE.read_text(encoding="utf-8").splitlines():
        if line.startswith("@@"):
            name = line[2:].strip()
            current = blocks.setdefault(name, []) if " " not in name else []
        else:
            current.append(line)
    return {name: "\n".join(lines).strip("\n") for name, lines in blocks.items()}


def text(name: str, **values: Any) -> str:
    """Block ``name`` of the prose file, filled in with ``values``."""
    return _blocks()[name].format(**values)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    return markdown_table(pd.DataFrame([list(map(str, r)) for r in rows], columns=list(header)))


def _pm(entry: dict[str, Any] | None, digits: int = 3) -> str:
    if not entry or entry.get("mean") is None:
        return "n/a"
    return f"{entry['mean']:.{digits}f} ± {entry.get('std') or 0.0:.{digits}f}"


def _num(value: float | None, fmt: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, fmt)


def _yes(flag: bool | None, quick: bool | None = False) -> str:
    if quick:
        return "n/a (quick run)"
    return "n/a" if flag is None else ("**yes**" if flag else "**no (missed)**")


def _rel(path: Path, doc: Path) -> str:
    return os.path.relpath(path, doc.parent)


def _provenance(doc: Doc) -> list[str]:
    hw = doc.get("hardware", {})
    load = hw.get("load_average")
    hardware = (f"{hw.get('cpu', '?')}, {hw.get('cores', '?')} usable cores, torch "
                f"{hw.get('torch', '?')}, device {hw.get('device', '?')}"
                + (f", load average at the end {load[0]:.1f}" if load else ""))
    line = (f"Produced by `{doc.get('command', '?')}`, finished {doc.get('finished', '?')} "
            f"(UTC). Hardware: {hardware}.")
    if doc.get("quick"):
        line += " **Quick (smoke) run: these figures are not meaningful.**"
    return [line]


def _bar_plot(path: Path, size: tuple[float, float], draw: Any) -> None:
    """``draw(ax)`` on a new pyplot figure, saved to ``path`` at 110 dpi."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    draw(ax)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- quality


def _study_table(study: Doc) -> str:
    tasks, best = study["tasks"], study.get("best", {})
    variants = [v for v in VARIANT_ORDER if v in study["variants"]]
    rows = []
    for variant in variants:
        cells = [_pm(study["variants"][variant].get(task)) for task in tasks]
        cells = [f"**{c}**" if variant in best.get(t, []) and c != "n/a" and len(variants) > 1
                 else c for t, c in zip(tasks, cells, strict=True)]
        verdict = ("— (baseline)" if variant == "single_task"
                   else study.get("verdicts", {}).get(variant, "n/a"))
        rows.append([variant, *cells, verdict])
    return _table(["variant", *(f"{t} ({m})" for t, m in tasks.items()), "negative transfer"],
                  rows)


def _quality_plot(studies: list[Doc], task: str, path: Path, title: str) -> bool:
    chosen = [s for s in studies if s.get("kind") == "regime" and task in s["tasks"]]
    if not chosen:
        return False
    variants = [v for v in VARIANT_ORDER if any(v in s["variants"] for s in chosen)]
    entries = {v: [s["variants"].get(v, {}).get(task) or {} for s in chosen] for v in variants}

    def draw(ax: Any) -> None:
        width = 0.8 / len(variants)
        for i, (variant, cells) in enumerate(entries.items()):
            xs = [j + (i - (len(variants) - 1) / 2) * width for j in range(len(chosen))]
            ax.bar(xs, [c.get("mean") or 0.0 for c in cells], width,
                   yerr=[c.get("std") or 0.0 for c in cells], capsize=2, label=variant)
        ax.set_xticks(range(len(chosen)))
        ax.set_xticklabels([s["name"].split("-", 1)[1] for s in chosen], rotation=0)
        ax.set_ylabel(f"{task} {chosen[0]['tasks'][task]} (mean ± std over seeds)")
        lows = [c.get("mean") for cells in entries.values() for c in cells]
        ax.set_ylim(max(0.0, min([x for x in lows if x is not None] or [0.0]) - 0.1), 1.0)
        ax.set_title(title, pad=22)
        ax.legend(fontsize=7, ncol=len(variants), loc="lower center",
                  bbox_to_anchor=(0.5, 1.0), frameon=False)

    _bar_plot(path, (1.6 + 1.5 * len(chosen), 3.6), draw)
    return True


def _comparison(studies: dict[str, Doc], study: Doc) -> list[str]:
    base = studies.get(study.get("compare_to") or "")
    if base is None:
        return []
    names = {"stop-gradient": ("stop-gradient (default)", "gradient through the target"),
             "co-annotation": ("soft co-annotation (default)", "hard co-annotation"),
             "protocol": ("early stopping (default)", "equal steps")}
    left, right = names.get(study.get("switch") or "", ("default", "changed"))
    rows = []
    for variant in study["variants"]:
        for task in study["tasks"]:
            a = base["variants"].get(variant, {}).get(task)
            b = study["variants"][variant].get(task)
            delta = (b["mean"] - a["mean"] if a and b and a.get("mean") is not None
                     and b.get("mean") is not None else None)
            single = base["variants"].get("single_task", {}).get(task)
            rows.append([variant, task, _pm(a), _pm(b), _num(delta, "+.3f"), _pm(single)])
    return [_table(["variant", "task", left, right, "difference", "single-task"], rows)]


def _variants_across_regimes(doc: Doc) -> list[str]:
    """Per multi-task variant, over the regimes: where it shows negative transfer, its mean
    rank (the report's ranking, averaged over the regimes) and how often it ranks first."""
    regimes = [s for s in doc.get("studies", []) if s.get("kind") == "regime"]
    variants = [v for v in dict.fromkeys(v for s in regimes for v in s.get("variants", {}))
                if v != "single_task"]
    if not regimes or not variants:
        return []
    from benchmarks.quality import best_variant

    rows = []
    for variant in variants:
        ran = [s for s in regimes if variant in s.get("variants", {})]
        hurt = [f"{s['name']} ({', '.join(s['negative'][variant])})" for s in ran
                if s.get("negative", {}).get(variant)]
        ranks = [s["ranking"][variant] for s in ran if variant in s.get("ranking", {})]
        rank = sum(ranks) / len(ranks) if ranks else None
        first = sum(best_variant(s) == variant for s in ran)
        rows.append([variant, f"{len(ran) - len(hurt)} of {len(ran)}", _num(rank),
                     str(first), "; ".join(hurt) or "—"])
    rows.sort(key=lambda r: (r[2] == "n/a", float(r[2]) if r[2] != "n/a" else 0.0))
    return [text("variants_across_regimes"), _table(
        ["variant", "regimes without negative transfer", "mean rank (single-task ranked too)",
         "ranked first", "negative transfer in (tasks)"], rows)]


def _negative_transfer_notes(doc: Doc) -> list[str]:
    """Where the best variant shows negative transfer, next to plain MTL on the same task."""
    from benchmarks.quality import best_variant

    rows: list[list[Any]] = []
    less: list[str] = []
    more: list[str] = []
    for study in (s for s in doc.get("studies", []) if s.get("kind") == "regime"):
        best = best_variant(study)
        for task in study["negative"].get(best, []) if best else []:
            gain, mtl_gain = study["gains"][best][task], study["gains"].get("mtl", {}).get(task)
            if mtl_gain is not None and gain is not None and best != "mtl":
                (less if gain > mtl_gain else more).append(f"{study['name']} {task}")
            rows.append([study["name"], best, task, _num(gain, "+.3f"), _num(mtl_gain, "+.3f"),
                         "yes" if task in study["negative"].get("mtl", []) else "no"])
    if not rows:
        return []
    header = ["study", "best variant", "task", "gain", "plain mtl gain", "plain mtl also negative"]
    return [text("negative_transfer_intro"), _table(header, rows),
            text("negative_transfer_causes", also_mtl=sum(r[-1] == "yes" for r in rows),
                 total=len(rows), less=", ".join(less) or "none",
                 more=", ".join(more) or "none")]


def _fashion_settings(settings: Doc) -> dict[str, str]:
    n = settings.get("fashion_max_samples")
    images = (f"a random {n:,} of the 70,000 images per seed (`sources.0.max_samples`, applied "
              f"before the train/test split, so about {round(n * 6 / 7):,} train and "
              f"{round(n / 7):,} test images), " if n else "all 70,000 images, ")
    backbone = settings.get("fashion_backbone")
    epochs = settings.get("fashion_epochs")
    return {
        "device": settings.get("device", "cpu").upper(),
        "images": images,
        "backbone": (f"the `{backbone}` backbone (hidden 256, 128) instead of the configs' "
                     "small_cnn, " if backbone else "the configs' small_cnn, "),
        "epochs": f"{epochs} epochs" if epochs else "the configs' epochs",
    }


def _quality_study(study: Doc, by_name: dict[str, Doc]) -> list[str]:
    from benchmarks.quality import best_variant

    head = [f"### {study['title']}", f"`{study['command']}`"]
    if study.get("kind") == "comparison":
        return [*head, *_comparison(by_name, study),
                f"(Single-task and the default from `{study.get('compare_to')}`.)"]
    steps, best = study.get("steps_per_run") or [], best_variant(study)
    line = ((f"Optimisation steps per run: {', '.join(map(str, steps))}. " if steps else "")
            + (f"Best variant: {best}. " if best else "")
            + f"Wall time {study.get('wall_s', 0):.0f} s. Full report: "
            f"`{study.get('report')}` (not in git).")
    failed = [f"- {f.splitlines()[0]}" for f in study.get("failed") or []]
    return [*head, _study_table(study), line,
            *(["Failed runs:", "\n".join(failed)] if failed else [])]


def quality_section(doc: Doc | None, out: Path, title: str = "Quality") -> list[str]:
    blocks = [f"## 1. {title}"]
    if doc is None:
        return [*blocks, "Not run yet: `python -m benchmarks quality`."]
    settings = doc.get("settings", {})
    blocks += [*_provenance(doc), text(
        "quality", seeds=settings.get("seeds", "?"), last_seed=settings.get("seeds", 1) - 1,
        jobs=doc.get("jobs", 1), threads=settings.get("threads", 1),
        minutes=doc.get("wall_s", 0) / 60, **_fashion_settings(settings))]
    targets = doc.get("targets", [])
    if targets:
        rows = [[t["target"], t["measured"], _yes(t["reached"], doc.get("quick"))]
                for t in targets]
        blocks += ["### Targets", _table(["target", "measured", "reached"], rows),
                   *_variants_across_regimes(doc), *_negative_transfer_notes(doc)]
    studies = doc.get("studies", [])
    for task, dataset, label in (("digit", "digits", "Digits"),
                                 ("category", "fashion", "Fashion-MNIST")):
        path = out.parent / "benchmarks" / f"quality-{dataset}.png"
        chosen = [s for s in studies if s["dataset"] == dataset]
        if _quality_plot(chosen, task, path, f"{label}: {task} per regime and variant"):
            blocks.append(f"![{label} {task}]({_rel(path, out)})")
    by_name = {s["name"]: s for s in studies}
    for study in studies:
        blocks += _quality_study(study, by_name)
    return blocks


SCARCE_TASK = {"digits": "digit", "fashion": "category"}
"""The task each dataset's regimes make scarce."""


def _recommendation_row(study: Doc) -> list[str] | None:
    """One regime under its recommendation: the model per task, test gains, verdicts."""
    rec = study.get("recommendation")
    if not rec or study.get("kind") != "regime":
        return None
    checks: dict[str, Doc] = rec.get("tasks", {})
    gains = {t: c.get("test_gain") for t, c in checks.items()}
    used = "; ".join(f"{t}: {c.get('variant', rec['variant'])}" for t, c in checks.items())
    hurt = [t for t, c in checks.items() if c.get("test_verdict") == "negative transfer"]
    known = [g for g in gains.values() if g is not None]
    scarce = SCARCE_TASK.get(study.get("dataset", ""))
    reference = study.get("gains", {}).get("mtl+ca+dm", {}).get(scarce) if scarce else None
    kept = (f"{gains[scarce] / reference:.0%}" if scarce in gains and gains[scarce] is not None
            and reference else "n/a")
    budget = any(t.get("stopped_early", 0) < t.get("runs", 0)
                 for t in study.get("training", {}).values())  # early stopping never fired
    return [study["name"], used,
            ", ".join(f"{t} {_num(g, '+.3f')}" for t, g in gains.items()),
            ", ".join(hurt) or "none", _num(min(known), "+.3f") if known else "n/a", kept,
            "yes" if budget else "no"]


def recommendation_section(doc: Doc | None, out: Path,
                           title: str = "The recommendation across regimes") -> list[str]:
    """Every regime study of ``doc`` under its validation-chosen recommendation."""
    studies = [s for s in (doc or {}).get("studies", []) if s.get("recommendation")]
    rows = [row for s in studies if (row := _recommendation_row(s)) is not None]
    if not rows:
        return []
    clean = sum(r[3] == "none" and r[6] == "no" for r in rows)  # no transfer, none at budget
    within = sum(r[4] != "n/a" and float(r[4]) >= -0.01 for r in rows)
    summary = (f"No negative transfer under the recommendation (and no run at its budget) in "
               f"{clean} of {len(rows)} regimes; no task below single-task by more than 0.01 "
               f"in {within} of {len(rows)}.")
    header = ["regime", "model used per task", "test gain of that model", "negative transfer",
              "worst gain", "scarce-task gain kept (of mtl+ca+dm's)", "a run at its budget"]
    assert doc is not None
    datasets = ", ".join(sorted({s.get("dataset", "?") for s in studies}))
    return [text("recommendation_section", title=f"{title}: {datasets}",
                 provenance="\n".join(_provenance(doc)),
                 intro=text("recommendation_intro"), table=_table(header, rows),
                 summary=summary)]


# --------------------------------------------------------------------------- cost


def _cost_plot(doc: Doc, path: Path) -> bool:
    cases = doc.get("cases", [])
    if not cases:
        return False

    def draw(ax: Any) -> None:
        for i, key in enumerate(("full/mtl", "full/single", "mtl/single")):
            ratios = [c["ratios"][key] for c in cases]
            ax.bar([j + (i - 1) * 0.27 for j in range(len(cases))],
                   [r["median"] for r in ratios], 0.27, capsize=2, label=key,
                   yerr=[[r["median"] - r["min"] for r in ratios],
                         [r["max"] - r["median"] for r in ratios]])
        for j, c in enumerate(cases):
            if c.get("target_full_over_mtl"):
                ax.hlines(c["target_full_over_mtl"], j - 0.45, j + 0.45, colors="k",
                          linestyles="dashed", linewidth=1)
        ax.axhline(1.0, color="grey", linewidth=0.6)
        medians = [c["ratios"][k]["median"] for c in cases for k in ("full/mtl", "full/single")]
        ax.set_ylim(min(0.8, min(medians) - 0.05), max(1.2, max(medians) + 0.1))
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels([c["case"]["name"] for c in cases], fontsize=8)
        ax.set_ylabel("step-time ratio (median of pairs;\nbars: range, clipped)")
        ax.set_title("Cost of a training step (dashed: full/mtl target)")
        ax.legend(fontsize=7)

    _bar_plot(path, (7, 3.4), draw)
    return True


def _memory_cell(m: Doc | None) -> str:
    if not m:
        return "—"
    return "error" if "error" in m else f"{m['delta_mib']:.0f} ({m['peak_mib']:.0f})"


def _cost_row(entry: Doc, quick: bool | None) -> list[str]:
    step, ratios, target = entry["step_s"], entry["ratios"], entry.get("target_full_over_mtl")
    full_mtl = ratios["full/mtl"]
    reached = None if target is None else full_mtl["median"] <= target
    memory = entry.get("memory") or {}
    return [entry["case"]["title"], *(f"{step[v] * 1e3:.1f}" for v in ("full", "mtl", "single")),
            f"{full_mtl['median']:.3f} ({full_mtl['min']:.3f}–{full_mtl['max']:.3f})",
            f"{ratios['full/single']['median']:.3f}",
            f"≤ {target:.2f}: {_yes(reached, quick)}" if target else "—",
            *(_memory_cell(memory.get(v)) for v in ("full", "mtl", "single"))]


def _aggregator_row(entry: Doc, quick: bool | None) -> list[str] | None:
    """``upgrad`` against ``full`` (summed gradients) for one case, if it was measured."""
    ratio = entry["ratios"].get("upgrad/full")
    if ratio is None:
        return None
    target = entry.get("target_upgrad_over_full")
    reached = None if target is None else ratio["median"] <= target
    return [entry["case"]["title"], f"{entry['step_s']['upgrad'] * 1e3:.1f}",
            f"{entry['step_s']['full'] * 1e3:.1f}",
            f"{ratio['median']:.3f} ({ratio['min']:.3f}–{ratio['max']:.3f})",
            f"≤ {target:.2f}: {_yes(reached, quick)}" if target else "—",
            _memory_cell((entry.get("memory") or {}).get("upgrad"))]


def _end_to_end(e2e: Doc, device: str, quick: bool | None) -> list[str]:
    reached = e2e["ratio"] <= e2e["target"]
    pairs = ", ".join(f"{r:.2f}" for r in e2e["pair_ratios"])
    rows = [["one epoch (wall)", f"{e2e['dmtl_epoch_s']:.3f}", f"{e2e['hand_epoch_s']:.3f}",
             f"{e2e['ratio']:.3f} (pairs: {pairs})",
             f"≤ {e2e['target']:.2f}: {_yes(reached, quick)}"],
            ["one epoch (CPU)", f"{e2e['dmtl_epoch_cpu_s']:.3f}", f"{e2e['hand_epoch_cpu_s']:.3f}",
             f"{e2e['dmtl_epoch_cpu_s'] / e2e['hand_epoch_cpu_s']:.3f}", "—"],
            ["loading one epoch's batches (CPU)", f"{e2e['dmtl_load_s']:.3f}",
             f"{e2e['hand_load_s']:.3f}", f"{e2e['dmtl_load_s'] / e2e['hand_load_s']:.3f}", "—"]]
    if "lightning_epoch_s" in e2e:  # the loop in a bare Lightning Trainer: its floor
        rows.append(["the minimal loop in a bare Lightning Trainer (wall; dmtl / it: "
                     f"{e2e['dmtl_over_lightning']:.3f})", f"{e2e['lightning_epoch_s']:.3f}",
                     f"{e2e['hand_epoch_s']:.3f}", f"{e2e['lightning_ratio']:.3f}", "—"])
    return [text("end_to_end", **{**e2e, "device": device, "repeats": len(e2e["repeats"])}),
            _table(["measure", "dmtl (s)", "minimal loop (s)", "ratio", "target"], rows)]


def _objective_step(step: Doc, quick: bool | None) -> list[str]:
    reached = step["ratio"] <= step["target"]
    pairs = ", ".join(f"{r:.2f}" for r in step["pair_ratios"])
    rows = [["one step", f"{step['dmtl_step_s'] * 1e3:.2f}", f"{step['plain_step_s'] * 1e3:.2f}",
             f"{step['ratio']:.3f} (pairs: {pairs})",
             f"≤ {step['target']:.2f}: {_yes(reached, quick)}"]]
    return [text("objective_step", **step),
            _table(["measure", "masked objective (ms)", "CE + BCE (ms)", "ratio", "target"],
                   rows)]


def _demo_run(run: Doc) -> list[str]:
    walls = ", ".join(f"{w:.2f}" for w in run["runs_s"])
    return [text("demo_run", **{**run, "walls": walls})]


def cost_section(doc: Doc | None, out: Path, title: str = "Cost",
                 number: str = "2") -> list[str]:
    blocks = [f"## {number}. {title}"]
    if doc is None:
        return [*blocks, "Not run yet: `python -m benchmarks cost`."]
    device, quick = doc.get("device", "cpu"), doc.get("quick")
    cuda = device.startswith("cuda")
    first = doc["cases"][0] if doc.get("cases") else {}
    one_thread = not cuda and doc.get("threads") == 1
    blocks += [*_provenance(doc), text(
        "cost", min_run_time=first.get("min_run_time_s", "?"), repeats=first.get("repeats", "?"),
        threads=doc.get("threads", "?"), one_thread=text("cost_one_thread") if one_thread else "",
        memory=text("memory_cuda" if cuda else "memory_cpu"))]
    header = ["case", "full ms", "mtl ms", "single ms", "full/mtl (range)", "full/single",
              "target (full/mtl)", "mem full", "mem mtl", "mem single"]
    blocks += [_table(header, [_cost_row(e, quick) for e in doc.get("cases", [])]),
               text("cost_columns")]
    aggregated = [r for e in doc.get("cases", []) if (r := _aggregator_row(e, quick))]
    if aggregated:
        blocks += [text("cost_aggregator"), _table(
            ["case", "upgrad ms", "full (sum) ms", "upgrad/full (range)", "target",
             "mem upgrad"], aggregated)]
    path = out.parent / "benchmarks" / ("gpu-cost-ratios.png" if cuda else "cost-ratios.png")
    if _cost_plot(doc, path):
        blocks.append(f"![cost ratios]({_rel(path, out)})")
    if doc.get("end_to_end"):
        blocks += _end_to_end(doc["end_to_end"], device, quick)
    if doc.get("objective_step"):
        blocks += _objective_step(doc["objective_step"], quick)
    if doc.get("demo_run"):
        blocks += _demo_run(doc["demo_run"])
    if doc.get("architectures"):
        blocks += _architectures(doc["architectures"])
    return blocks


def _architectures(arch: Doc) -> list[str]:
    """The per-step cost of each architecture as a ratio to the shared model."""
    cases = arch.get("cases", [])
    if not cases:
        return []
    names = list(cases[0]["ratio_to_shared"])
    rows = [[c["case"]["name"], *(f"{c['ratio_to_shared'][n]:.2f} "
                                  f"({c['step_s'][n] * 1e3:.1f} ms, "
                                  f"{c['parameters'][n] or 0:,} params)" for n in names)]
            for c in cases]
    load = ", ".join(f"{x:.1f}" for x in cases[-1].get("load", []))
    return [text("cost_architectures", command=arch.get("command", "?"),
                 threads=arch.get("threads", "?"), repeats=cases[0].get("repeats", "?"),
                 load=load or "?"),
            _table(["case", *(f"{n} / shared" for n in names)], rows)]


# --------------------------------------------------------------------------- ddp


def _ddp_table(runs: dict[str, list[Doc]]) -> str:
    metrics = sorted({m for k in runs for r in runs[k] for m in r.get("metrics", {})
                      if m.endswith("/accuracy") or m.endswith("/f1_mean")})
    rows = [[k, i + 1, _num(r.get("samples_per_s"), ",.0f"),
             _num((r.get("step_s_median") or math.nan) * 1e3, ".1f"), r.get("steps_timed"),
             f"{r.get('fit_s', 0):.1f}", *(_num(r.get("metrics", {}).get(m), ".4f")
                                           for m in metrics)]
            for k in ("1", "2") for i, r in enumerate(runs.get(k, []))]
    return _table(["processes", "repeat", "samples/s", "median step ms", "steps timed", "fit s",
                   *metrics], rows)


def ddp_section(doc: Doc | None, out: Path) -> list[str]:
    blocks = ["## 3. Scale-out: DDP on CPU"]
    if doc is None:
        return [*blocks, "Not run yet: `python -m benchmarks ddp`."]
    runs = doc["runs"]
    first = runs["1"][0] if runs.get("1") else {}
    commands = "\n".join(f"- `{runs[k][0]['command']}`" for k in ("1", "2") if runs.get(k))
    blocks += [*_provenance(doc), text(
        "ddp", launcher=doc["launcher"], config=doc["config"],
        overrides=", ".join(f"`{o}`" for o in doc["overrides"]),
        batch_size=first.get("batch_size", "?"), steps=first.get("steps", "?"),
        warmup=doc["warmup_steps_per_epoch"], repeats=doc["repeats"]), commands, _ddp_table(runs)]
    speedup = doc.get("speedup")
    reached = None if speedup is None else speedup >= doc["target"]
    blocks.append(text("ddp_speedup", speedup=_num(speedup, ".2f"), target=doc["target"],
                       pairs=", ".join(f"{s:.2f}" for s in doc.get("speedups", [])),
                       reached=_yes(reached, doc.get("quick"))))
    one = sorted(r["step_s_median"] for r in runs.get("1", []) if r.get("step_s_median"))
    two = sorted(r["step_s_median"] for r in runs.get("2", []) if r.get("step_s_median"))
    if one and two and reached is False and not doc.get("quick"):
        s1, s2 = one[len(one) // 2], two[len(two) // 2]
        blocks.append(text("ddp_missed", one=s1 * 1e3, two=s2 * 1e3, ideal=s1 * 500,
                           fixed=(s2 - s1 / 2) * 1e3))
    return blocks


# --------------------------------------------------------------------------- gpu + loader


def gpu_section(results: dict[str, Doc], out: Path) -> list[str]:
    blocks = [text("gpu")]
    cost, quality = results.get("gpu-cost"), results.get("gpu-quality")
    if not [d for d in (cost, quality) if d is not None and not d.get("quick")]:
        return [*blocks, text("gpu_missing")]
    if cost is not None:
        blocks += cost_section(cost, out, title=f"GPU cost ({cost['hardware'].get('device')})",
                               number="4.1")
    if quality is not None:
        blocks += quality_section(
            quality, out, title=f"GPU quality ({quality['hardware'].get('device')})")
    return blocks


def loader_section(doc: Doc | None, gpu: Doc | None = None) -> list[str]:
    blocks = ["## 5. Loader throughput"]
    if doc is None:
        return [*blocks, "Not run yet: `python -m benchmarks loader`."]
    data = doc["loader"]
    rows = [[r["path"], r["workers"], f"{r['samples_per_s']:,.0f}", f"{r['vs_train_step']:.2f}",
             f"{r['startup_s']:.2f}", "yes" if r["bottleneck"] else "no"]
            for r in data["loaders"]]
    train = data["train_step"]
    rows.append([f"tiny CNN train step ({train['device']})", "—",
                 f"{train['samples_per_s']:,.0f}", "1.00", "—", "—"])
    blocks += [*_provenance(doc),
               text("loader", **{**data, "command": doc["loader_command"],
                                 "shape": tuple(data["input_shape"])}),
               _table(["path", "workers", "samples/s", "× train step", "start-up s",
                       "loader is the bottleneck"], rows)]
    if data.get("jpeg"):
        blocks += _jpeg_section(data["jpeg"], doc.get("quick"))
    if gpu is not None and gpu.get("loader", {}).get("line"):
        blocks.append(text("workers_per_gpu", line=gpu["loader"]["line"],
                           command=gpu.get("loader_command", "benchmarks/gpu.sh")))
    return blocks


def _jpeg_section(jpeg: Doc, quick: bool | None) -> list[str]:
    decoders = [[r["decoder"], f"{r['images_per_s']:,.0f}", f"{r['max_diff_vs_pillow']:.4f}"]
                for r in jpeg["decoders"]]
    loaders = [[r["path"], r["workers"], f"{r['samples_per_s']:,.0f}", f"{r['startup_s']:.2f}"]
               for r in jpeg["loaders"]]
    loaders += [[f"resnet18 training step, {t['threads']} thread(s), batch {t['batch_size']}",
                 "—", f"{t['samples_per_s']:,.1f}", "—"] for t in jpeg["resnet18"]]
    return [text("jpeg", **jpeg),
            _table(["decoder (one process, one thread)", "images/s",
                    "largest pixel difference from Pillow"], decoders),
            _table([f"training loader at {jpeg['train_size']} px, batch 64", "workers",
                    "samples/s", "start-up s"], loaders),
            text("jpeg_verdict", keeps_up=_yes(jpeg["keeps_up"], quick),
                 best=jpeg["best_workers"])]


# --------------------------------------------------------------------------- document


def _summary(results: dict[str, Doc]) -> str:
    rows: list[list[str]] = []
    quality = results.get("quality") or {}
    rows += [["quality", t["target"], t["measured"], _yes(t["reached"], quality.get("quick"))]
             for t in quality.get("targets", [])]
    cost = results.get("cost") or {}
    for entry in cost.get("cases", []):
        target = entry.get("target_full_over_mtl")
        if target:
            value = entry["ratios"]["full/mtl"]["median"]
            rows.append(["cost", f"{entry['case']['name']}: full/mtl step time ≤ {target:.2f}",
                         f"{value:.3f}", _yes(value <= target, cost.get("quick"))])
        target = entry.get("target_upgrad_over_full")
        if target and "upgrad/full" in entry["ratios"]:
            value = entry["ratios"]["upgrad/full"]["median"]
            rows.append(["cost", f"{entry['case']['name']}: UPGrad / summed gradients step "
                         f"time ≤ {target:.2f}", f"{value:.3f}",
                         _yes(value <= target, cost.get("quick"))])
    e2e = cost.get("end_to_end")
    if e2e:
        rows.append(["cost", f"one epoch of `dmtl train` / minimal loop ≤ {e2e['target']:.2f}",
                     f"{e2e['ratio']:.3f}",
                     _yes(e2e["ratio"] <= e2e["target"], cost.get("quick"))])
    step = cost.get("objective_step")
    if step:
        rows.append(["cost", f"masked objective step / CE + BCE ≤ {step['target']:.2f}",
                     f"{step['ratio']:.3f}",
                     _yes(step["ratio"] <= step["target"], cost.get("quick"))])
    jpeg = (results.get("loader") or {}).get("loader", {}).get("jpeg")
    if jpeg:
        rows.append(["loader", f"{jpeg['size']} px JPEG loader keeps up with a resnet18 step "
                     f"at {jpeg['train_size']} px", "yes" if jpeg["keeps_up"] else "no",
                     _yes(jpeg["keeps_up"], (results.get("loader") or {}).get("quick"))])
    ddp = results.get("ddp")
    if ddp and ddp.get("speedup") is not None:
        rows.append(["ddp", f"2 vs 1 CPU process ≥ {ddp['target']}x", f"{ddp['speedup']:.2f}x",
                     _yes(ddp["speedup"] >= ddp["target"], ddp.get("quick"))])
    return _table(["section", "target", "measured", "reached"], rows) if rows else \
        "No results yet."


def _hardware_table(results: dict[str, Doc]) -> str:
    rows = []
    for name, doc in results.items():
        hw = doc.get("hardware", {})
        load = hw.get("load_average")
        rows.append([name, doc.get("finished", "?"), hw.get("cpu", "?"), hw.get("cores", "?"),
                     hw.get("torch", "?"), hw.get("device", "?"),
                     f"{load[0]:.1f}" if load else "?", "yes" if doc.get("quick") else "no"])
    return _table(["result", "finished (UTC)", "CPU", "cores", "torch", "device",
                   "load avg (1 min) at end", "quick"], rows)


def shards_report(doc: Doc | None) -> list[str]:
    """The shards section (``benchmarks/shards.py`` renders its own result)."""
    from benchmarks.shards import report_lines

    return report_lines(doc)


def render(results: dict[str, Doc], out: Path, results_dir: Path) -> str:
    blocks = [text("header", now=now(), results=_rel(results_dir, out)),
              _hardware_table(results), text("noise"), _summary(results),
              *quality_section(results.get("quality"), out),
              *[block for name in sorted(results) if name.startswith("quality-recommendation")
                for block in recommendation_section(results[name], out)],
              *cost_section(results.get("cost"), out),
              *ddp_section(results.get("ddp"), out),
              *gpu_section(results, out),
              *loader_section(results.get("loader"), results.get("gpu-loader")),
              *faces_section(results.get("faces")),
              *shards_report(results.get("shards")),
              text("layout")]
    return "\n\n".join(blocks).rstrip() + "\n"


def write_report(results_dir: Path, out: Path) -> Path:
    """Render the page from ``results_dir/*.json`` to ``out`` (plots in ``out``'s folder)."""
    results = read_results(results_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(results, out, results_dir))
    return out


if __name__ == "__main__":
    from benchmarks.common import DOC_PATH, RESULTS_DIR

    print(write_report(RESULTS_DIR, DOC_PATH))
