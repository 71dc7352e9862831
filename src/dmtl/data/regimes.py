"""Label-hiding regimes: make a partially labelled training set from a fully labelled one.

The paper's non-affect studies annotate every task on the same images and make
the partial setting by *hiding* labels. A regime takes an encoded label dict
(categorical ``int64 (N,)`` with ``-1`` = unlabelled; binary-set ``float32 (N, K)``
with ``NaN`` = not observed), hides some of it, and returns the new dict plus a
:class:`RegimeRecord` that counts, for every task, what was there before, what
is left and what was hidden (``before == after + hidden``, always), and
fingerprints the sample groups. All randomness comes from
``numpy.random.default_rng(seed)``: the same inputs and seed give the same
result; the input arrays are never modified.

Regimes (``RegimeSpec(name, params)``):

- ``full``: nothing hidden.
- ``disjoint`` (``groups=None, proportions=None``): the samples are shuffled and
  cut into one block per task group (default: one group per task that has a
  label in scope, equal shares; a task with no label there is left alone); a
  sample keeps only the labels of its group's tasks, so no two groups share a
  sample. Given ``groups`` must hold every task that has a label in scope.
  Block sizes use largest-remainder rounding of ``N * proportion`` and add up
  to ``N``.
- ``scarce`` (``task, fraction, others_on="rest"``): keep ``fraction`` of
  ``task``'s labelled samples. If the task is categorical the choice is
  stratified by class: class ``c`` with ``n_c`` labelled samples keeps
  ``k_c = max(1, floor(fraction * n_c))``, then the classes with the largest
  ``fraction * n_c - k_c`` get one more each until the total is
  ``round(fraction * n)`` (``n`` = labelled samples). So every class keeps at
  least one label and within one of its share; the total is exactly
  ``round(fraction * n)`` unless the one-per-class floor forces more. A
  binary-set task keeps ``max(1, round(fraction * n))`` random labelled samples
  (all their entries).
  ``others_on="rest"``: the other tasks keep their labels only on the samples
  *not* kept for ``task`` (no overlap); ``"all"``: they keep all their labels.
- ``imbalance`` (``ratio, groups=None``): ``disjoint`` with block sizes in the
  ratio ``ratio[task]`` (relative counts, e.g. ``{"digit": 20, "shape": 1}``);
  with ``groups``, the tasks of a group give its weight and must agree.
- ``overlap`` (``fraction, groups=None, proportions=None``):
  ``round(fraction * N)`` random samples stay co-annotated (all tasks; the
  empirical relatedness can be estimated from them), the rest is split as in
  ``disjoint``.
- ``unlabelled`` (``fraction=0.5, then=None``): ``round(fraction * N)`` random samples
  keep no label for any task (only distribution matching learns from them); the
  rest goes through the regime ``then`` (``{name, params}``, default ``full``), e.g.
  ``then: {name: scarce, params: {task: digit, fraction: 0.03}}``.

Apply a regime to the *training* part only (``rows=``), so that evaluation
labels stay whole.

>>> import numpy as np
>>> from dmtl.core.tasks import BinarySetTask, CategoricalTask
>>> tasks = [CategoricalTask("a", ["x", "y"]), BinarySetTask("b", ["u", "v"])]
>>> labels = {"a": np.array([0, 1, 0, 1]), "b": np.zeros((4, 2), np.float32)}
>>> new, record = apply_regime(labels, tasks, RegimeSpec("disjoint"), seed=0)
>>> [record.tasks[t].after for t in ("a", "b")], record.tasks["a"].hidden
([2, 2], 2)
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dmtl.core.tasks import Task

EncodedLabels = dict[str, np.ndarray]


@dataclass(frozen=True)
class RegimeSpec:
    """A regime's name and its parameters (see the module docstring)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskCount:
    """Label counts of one task. ``before == after + hidden`` for samples and for entries.

    Samples count rows with at least one observed entry; entries count observed
    values (equal to samples for a categorical task).
    """

    before: int
    after: int
    hidden: int
    entries_before: int
    entries_after: int
    entries_hidden: int


@dataclass(frozen=True)
class GroupRecord:
    """A block of samples and the tasks it keeps; ``indices_sha256`` fingerprints its rows."""

    name: str
    tasks: list[str]
    size: int
    indices_sha256: str


@dataclass(frozen=True)
class RegimeRecord:
    """What a regime did: JSON-serialisable (see :meth:`to_dict`)."""

    regime: str
    params: dict[str, Any]
    seed: int
    num_samples: int
    num_rows: int
    tasks: dict[str, TaskCount]
    groups: list[GroupRecord]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


# ---- helpers ----------------------------------------------------------------------------------


def _hash(indices: np.ndarray) -> str:
    data = np.sort(np.asarray(indices, dtype=np.int64)).astype("<i8").tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def _allocate(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` into integer parts proportional to ``weights`` (largest remainder)."""
    w = np.asarray(weights, dtype=np.float64)
    quotas = total * w / w.sum()
    parts = np.floor(quotas).astype(np.int64)
    short = total - int(parts.sum())
    order = np.argsort(-(quotas - parts), kind="stable")
    parts[order[:short]] += 1
    return [int(p) for p in parts]


def _check_fraction(regime: str, value: Any, field_name: str = "fraction") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{regime}: {field_name} must be a number in (0, 1], got {value!r}")
    value = float(value)
    if not (0.0 < value <= 1.0):
        raise ValueError(f"{regime}: {field_name} must lie in (0, 1], got {value!r}")
    return value


def _check_groups(
    regime: str,
    groups: Sequence[Sequence[str]] | None,
    names: Sequence[str],
    active: Sequence[str],
) -> list[list[str]]:
    """Default: one group per active task. Given groups: every active task in exactly one.

    ``names``: the tasks in the label dict; ``active``: those with a label in scope.
    """
    if groups is None:
        return [[n] for n in active]
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence):
        raise ValueError(f"{regime}: groups must be a list of lists of task names, got {groups!r}")
    out: list[list[str]] = []
    seen: dict[str, int] = {}
    for i, group in enumerate(groups):
        if isinstance(group, (str, bytes)) or not isinstance(group, Sequence) or not group:
            raise ValueError(
                f"{regime}: groups[{i}] must be a non-empty list of task names, got {group!r}"
            )
        for name in group:
            if name not in names:
                raise ValueError(
                    f"{regime}: groups[{i}] names unknown task {name!r}; "
                    f"labelled tasks: {', '.join(names)}"
                )
            if name in seen:
                raise ValueError(
                    f"{regime}: groups: task {name!r} is in groups[{seen[name]}] and groups[{i}]"
                )
            seen[name] = i
        out.append([str(n) for n in group])
    missing = [n for n in active if n not in seen]
    if missing:
        raise ValueError(
            f"{regime}: groups: tasks {missing} are in no group (their labels would be lost)"
        )
    return out


def _check_proportions(
    regime: str, proportions: Sequence[float] | None, num_groups: int, field_name: str
) -> list[float]:
    if proportions is None:
        return [1.0 / num_groups] * num_groups if num_groups else []
    if isinstance(proportions, (str, bytes)) or not isinstance(proportions, Sequence):
        raise ValueError(f"{regime}: {field_name} must be a list of numbers, got {proportions!r}")
    if len(proportions) != num_groups:
        raise ValueError(
            f"{regime}: {field_name} has {len(proportions)} entries for {num_groups} groups"
        )
    values: list[float] = []
    for i, p in enumerate(proportions):
        if (
            isinstance(p, bool)
            or not isinstance(p, (int, float))
            or not (math.isfinite(p) and p > 0)
        ):
            raise ValueError(f"{regime}: {field_name}[{i}] must be a positive number, got {p!r}")
        values.append(float(p))
    total = sum(values)
    return [v / total for v in values]


def _active(labels: EncodedLabels, tasks: dict[str, Task], rows: np.ndarray) -> list[str]:
    """Tasks with at least one label among ``rows``."""
    return [n for n, v in labels.items() if bool(tasks[n].labelled_rows(v[rows]).any())]


def _split_blocks(
    rows: np.ndarray, proportions: Sequence[float], rng: np.random.Generator
) -> list[np.ndarray]:
    shuffled = rng.permutation(rows)
    sizes = _allocate(len(rows), proportions)
    bounds = np.cumsum([0, *sizes])
    return [np.sort(shuffled[bounds[i] : bounds[i + 1]]) for i in range(len(sizes))]


@dataclass
class _Plan:
    """Which rows keep which task: ``keep[task]`` is a boolean ``(N,)``; groups for the record."""

    keep: dict[str, np.ndarray]
    groups: list[GroupRecord]
    params: dict[str, Any]


def _group_record(name: str, tasks: Sequence[str], indices: np.ndarray) -> GroupRecord:
    return GroupRecord(name, list(tasks), len(indices), _hash(indices))


def _disjoint_plan(
    num_samples: int,
    rows: np.ndarray,
    groups: list[list[str]],
    proportions: list[float],
    rng: np.random.Generator,
    names: Sequence[str],
) -> tuple[dict[str, np.ndarray], list[GroupRecord]]:
    keep = {n: np.ones(num_samples, dtype=bool) for n in names}
    records: list[GroupRecord] = []
    if not groups:  # no task labelled in scope: nothing to hide
        return keep, records
    for group in groups:
        for n in group:
            keep[n][rows] = False
    for group, block in zip(groups, _split_blocks(rows, proportions, rng), strict=True):
        for n in group:
            keep[n][block] = True
        records.append(_group_record("+".join(group), group, block))
    return keep, records


# ---- regimes ----------------------------------------------------------------------------------
# Each planner gets (labels, tasks by name, rows in scope, rng, **params) and returns a _Plan.


def _plan_full(
    labels: EncodedLabels, tasks: dict[str, Task], rows: np.ndarray, rng: np.random.Generator
) -> _Plan:
    n = len(next(iter(labels.values())))
    keep = {name: np.ones(n, dtype=bool) for name in labels}
    return _Plan(keep, [_group_record("all", list(labels), rows)], {})


def _plan_disjoint(
    labels: EncodedLabels,
    tasks: dict[str, Task],
    rows: np.ndarray,
    rng: np.random.Generator,
    groups: Sequence[Sequence[str]] | None = None,
    proportions: Sequence[float] | None = None,
) -> _Plan:
    names = list(labels)
    active = _active(labels, tasks, rows)
    checked = _check_groups("disjoint", groups, names, active)
    if groups is None and proportions is not None and len(proportions) == len(names):
        # one proportion per task: a task with no label in scope has no group, nor a share
        proportions = [p for name, p in zip(names, proportions, strict=True) if name in active]
    props = _check_proportions("disjoint", proportions, len(checked), "proportions")
    n = len(labels[names[0]])
    keep, records = _disjoint_plan(n, rows, checked, props, rng, names)
    return _Plan(keep, records, {"groups": checked, "proportions": props})


def _plan_imbalance(
    labels: EncodedLabels,
    tasks: dict[str, Task],
    rows: np.ndarray,
    rng: np.random.Generator,
    ratio: Mapping[str, float] | None = None,
    groups: Sequence[Sequence[str]] | None = None,
) -> _Plan:
    names = list(labels)
    if ratio is None or not isinstance(ratio, Mapping):
        raise ValueError(f"imbalance: ratio must map task names to relative counts, got {ratio!r}")
    unknown = [k for k in ratio if k not in names]
    if unknown:
        raise ValueError(f"imbalance: ratio names unknown tasks {unknown}")
    checked = _check_groups("imbalance", groups, names, _active(labels, tasks, rows))
    weights: list[float] = []
    for i, group in enumerate(checked):
        given = {float(ratio[t]) for t in group if t in ratio}
        if not given:
            raise ValueError(f"imbalance: ratio has no entry for {' or '.join(map(repr, group))}")
        if len(given) > 1:
            raise ValueError(
                f"imbalance: ratio gives the tasks of groups[{i}] different values {sorted(given)}"
            )
        weights.append(given.pop())
    props = _check_proportions("imbalance", weights, len(checked), "ratio")
    n = len(labels[names[0]])
    keep, records = _disjoint_plan(n, rows, checked, props, rng, names)
    return _Plan(
        keep, records, {"ratio": {k: float(v) for k, v in ratio.items()}, "groups": checked}
    )


def _plan_overlap(
    labels: EncodedLabels,
    tasks: dict[str, Task],
    rows: np.ndarray,
    rng: np.random.Generator,
    fraction: float | None = None,
    groups: Sequence[Sequence[str]] | None = None,
    proportions: Sequence[float] | None = None,
) -> _Plan:
    names = list(labels)
    frac = _check_fraction("overlap", fraction)
    checked = _check_groups("overlap", groups, names, _active(labels, tasks, rows))
    props = _check_proportions("overlap", proportions, len(checked), "proportions")
    shuffled = rng.permutation(rows)
    num_shared = round(frac * len(rows))
    shared, rest = np.sort(shuffled[:num_shared]), np.sort(shuffled[num_shared:])
    n = len(labels[names[0]])
    keep, records = _disjoint_plan(n, rest, checked, props, rng, names)
    for name in names:
        keep[name][shared] = True
    records.insert(0, _group_record("co-annotated", names, shared))
    params = {"fraction": frac, "groups": checked, "proportions": props}
    return _Plan(keep, records, params)


def _plan_scarce(
    labels: EncodedLabels,
    tasks: dict[str, Task],
    rows: np.ndarray,
    rng: np.random.Generator,
    task: str | None = None,
    fraction: float | None = None,
    others_on: str = "rest",
) -> _Plan:
    names = list(labels)
    if task not in names:
        raise ValueError(
            f"scarce: task must name a labelled task ({', '.join(names)}), got {task!r}"
        )
    frac = _check_fraction("scarce", fraction)
    if others_on not in ("rest", "all"):
        raise ValueError(f"scarce: others_on must be 'rest' or 'all', got {others_on!r}")
    spec = tasks[task]
    values = labels[task]
    in_scope = np.zeros(len(values), dtype=bool)
    in_scope[rows] = True
    labelled = np.flatnonzero(spec.labelled_rows(values) & in_scope)
    strata = spec.strata(values[labelled])
    if strata is not None:
        classes = strata
        present = np.unique(classes)
        counts = np.array([(classes == c).sum() for c in present])
        quotas = frac * counts
        parts = np.maximum(np.floor(quotas).astype(np.int64), 1)
        short = round(frac * len(labelled)) - int(parts.sum())
        if short > 0:
            room = parts < counts
            order = [i for i in np.argsort(-(quotas - parts), kind="stable") if room[i]]
            for i in order[:short]:
                parts[i] += 1
        chosen = np.concatenate(
            [rng.permutation(labelled[classes == c])[: parts[i]] for i, c in enumerate(present)]
            or [np.zeros(0, dtype=np.int64)]
        )
    else:
        size = min(len(labelled), max(1, round(frac * len(labelled))))
        chosen = rng.permutation(labelled)[:size]
    chosen = np.sort(chosen.astype(np.int64))
    n = len(values)
    keep = {name: np.ones(n, dtype=bool) for name in names}
    keep[task][rows] = False
    keep[task][chosen] = True
    rest = np.setdiff1d(rows, chosen)
    others = [name for name in names if name != task]
    if others_on == "rest":
        for name in others:
            keep[name][chosen] = False
        records = [_group_record(task, [task], chosen), _group_record("rest", others, rest)]
    else:
        records = [
            _group_record(task, names, chosen),
            _group_record("rest", others, rest),
        ]
    return _Plan(keep, records, {"task": task, "fraction": frac, "others_on": others_on})


def _plan_unlabelled(
    labels: EncodedLabels,
    tasks: dict[str, Task],
    rows: np.ndarray,
    rng: np.random.Generator,
    fraction: float = 0.5,
    then: Mapping[str, Any] | None = None,
) -> _Plan:
    names = list(labels)
    frac = _check_fraction("unlabelled", fraction)
    shuffled = rng.permutation(rows)
    count = round(frac * len(rows))
    hidden, rest = np.sort(shuffled[:count]), np.sort(shuffled[count:])
    inner = _inner_spec(then)
    plan = REGIMES[inner.name](labels, tasks, rest, rng, **dict(inner.params))
    keep = {name: plan.keep[name].copy() for name in names}
    for name in names:
        keep[name][hidden] = False
    groups = [_group_record("unlabelled", [], hidden), *plan.groups]
    params = {"fraction": frac, "then": {"name": inner.name, "params": plan.params}}
    return _Plan(keep, groups, params)


def _inner_spec(then: Mapping[str, Any] | None) -> RegimeSpec:
    """The regime applied to the labelled rest of an ``unlabelled`` regime (default full)."""
    if then is None:
        return RegimeSpec("full")
    if not isinstance(then, Mapping) or "name" not in then:
        raise ValueError(f"unlabelled: then must be a regime {{name, params}}, got {then!r}")
    name, params = then["name"], dict(then.get("params") or {})
    if name not in REGIMES or name == "unlabelled":
        raise ValueError(f"unlabelled: then.name must be one of {', '.join(_PARAMS)} "
                         f"(not unlabelled), got {name!r}")
    unknown = [k for k in params if k not in _PARAMS[name]]
    missing = [k for k in _REQUIRED.get(name, ()) if k not in params]
    if unknown or missing:
        raise ValueError(
            f"unlabelled: then: regime {name!r} "
            + (f"has no parameters {unknown}" if unknown else f"needs {', '.join(missing)}")
        )
    return RegimeSpec(name, params)


Planner = Callable[..., _Plan]

REGIMES: dict[str, Planner] = {
    "full": _plan_full,
    "disjoint": _plan_disjoint,
    "scarce": _plan_scarce,
    "imbalance": _plan_imbalance,
    "overlap": _plan_overlap,
    "unlabelled": _plan_unlabelled,
}
"""Regime name -> planner; the names :class:`RegimeSpec` accepts."""

_PARAMS: dict[str, tuple[str, ...]] = {
    "full": (),
    "disjoint": ("groups", "proportions"),
    "scarce": ("task", "fraction", "others_on"),
    "imbalance": ("ratio", "groups"),
    "overlap": ("fraction", "groups", "proportions"),
    "unlabelled": ("fraction", "then"),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "scarce": ("task", "fraction"),
    "imbalance": ("ratio",),
    "overlap": ("fraction",),
}


# ---- entry point ------------------------------------------------------------------------------


def _check_labels(labels: Mapping[str, np.ndarray], tasks: Sequence[Task]) -> dict[str, Task]:
    by_name = {t.name: t for t in tasks}
    if not labels:
        raise ValueError("labels: no task is labelled")
    unknown = [k for k in labels if k not in by_name]
    if unknown:
        raise ValueError(f"labels: unknown tasks {unknown}; tasks: {', '.join(by_name)}")
    sizes = {name: len(v) for name, v in labels.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"labels: tasks disagree on the number of samples: {sizes}")
    for name, values in labels.items():
        task = by_name[name]
        values, expected = np.asarray(values), task.unlabelled(1)
        if values.shape[1:] != expected.shape[1:] or values.dtype.kind != expected.dtype.kind:
            raise ValueError(
                f"labels[{name!r}]: {task.kind} labels must have shape (N, "
                f"{', '.join(map(str, expected.shape[1:]))}) and dtype kind "
                f"{expected.dtype.kind!r}, got {values.dtype} {values.shape}".replace(
                    "(N, )", "(N,)"
                )
            )
    return {name: by_name[name] for name in labels}


def _check_rows(rows: np.ndarray | None, n: int) -> np.ndarray:
    if rows is None:
        return np.arange(n, dtype=np.int64)
    rows = np.asarray(rows)
    if rows.dtype == bool:
        if rows.shape != (n,):
            raise ValueError(f"rows: a boolean mask must have shape ({n},), got {rows.shape}")
        return np.flatnonzero(rows).astype(np.int64)
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError("rows: expected a boolean mask or a 1-D array of row indices")
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise ValueError(f"rows: indices must lie in [0, {n - 1}]")
    unique = np.unique(rows.astype(np.int64))
    if len(unique) != len(rows):
        raise ValueError("rows: duplicated row indices")
    return unique


def apply_regime(
    labels: Mapping[str, np.ndarray],
    tasks: Sequence[Task],
    spec: RegimeSpec,
    seed: int,
    rows: np.ndarray | None = None,
) -> tuple[EncodedLabels, RegimeRecord]:
    """Hide labels as ``spec`` says; return the new encoded labels and the record.

    ``rows`` (a boolean mask or indices) limits the regime to those samples,
    e.g. the training split; labels of the other rows are returned unchanged.
    Raises ``ValueError`` naming the offending field.
    """
    if not isinstance(spec, RegimeSpec):
        raise ValueError(f"spec: expected a RegimeSpec, got {type(spec).__name__}")
    if spec.name not in REGIMES:
        raise ValueError(
            f"regime name: unknown regime {spec.name!r}; expected one of: {', '.join(REGIMES)}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    unknown = [k for k in spec.params if k not in _PARAMS[spec.name]]
    if unknown:
        allowed = ", ".join(_PARAMS[spec.name]) or "none"
        raise ValueError(
            f"params: unknown parameters {unknown} for regime {spec.name!r} (allowed: {allowed})"
        )
    missing = [k for k in _REQUIRED.get(spec.name, ()) if k not in spec.params]
    if missing:
        raise ValueError(f"params: regime {spec.name!r} needs {', '.join(missing)}")
    by_name = _check_labels(labels, tasks)
    original = {name: np.asarray(v) for name, v in labels.items()}
    num_samples = len(next(iter(original.values())))
    scope = _check_rows(rows, num_samples)
    rng = np.random.default_rng(int(seed))
    plan = REGIMES[spec.name](original, by_name, scope, rng, **dict(spec.params))

    new: EncodedLabels = {}
    counts: dict[str, TaskCount] = {}
    for name, values in original.items():
        task = by_name[name]
        out = task.hide(values, ~plan.keep[name])
        new[name] = out
        obs_before, obs_after = task.observed(values), task.observed(out)
        rows_before = task.labelled_rows(values)
        rows_after = task.labelled_rows(out)
        counts[name] = TaskCount(
            before=int(rows_before.sum()),
            after=int(rows_after.sum()),
            hidden=int((rows_before & ~rows_after).sum()),
            entries_before=int(obs_before.sum()),
            entries_after=int(obs_after.sum()),
            entries_hidden=int((obs_before & ~obs_after).sum()),
        )
    record = RegimeRecord(
        regime=spec.name,
        params=plan.params,
        seed=int(seed),
        num_samples=num_samples,
        num_rows=len(scope),
        tasks=counts,
        groups=plan.groups,
    )
    return new, record


# ---- one function per regime ------------------------------------------------------------------


def full(
    labels: Mapping[str, np.ndarray],
    tasks: Sequence[Task],
    seed: int = 0,
    rows: np.ndarray | None = None,
) -> tuple[EncodedLabels, RegimeRecord]:
    """Nothing hidden (the record still counts the labels)."""
    return apply_regime(labels, tasks, RegimeSpec("full"), seed, rows)


def disjoint(
    labels: Mapping[str, np.ndarray],
    tasks: Sequence[Task],
    groups: Sequence[Sequence[str]] | None = None,
    proportions: Sequence[float] | None = None,
    seed: int = 0,
    rows: np.ndarray | None = None,
) -> tuple[EncodedLabels, RegimeRecord]:
    """One block of samples per task group, no overlap (module docstring)."""
    params = {"groups": groups, "proportions": proportions}
    return apply_regime(labels, tasks, RegimeSpec("disjoint", params), seed, rows)


def scarce(
    labels: Mapping[str, np.ndarray],
    tasks: Sequence[Task],
    task: str,
    fraction: float,
    others_on: str = "rest",
    seed: int = 0,
    rows: np.ndarray | None = None,
) -> tuple[EncodedLabels, RegimeRecord]:
    """Keep ``fraction`` of ``task``'s labels (stratified by class); others on the rest or all."""
    params = {"task": task, "fraction": fraction, "others_on": others_on}
    return apply_regime(labels, tasks, RegimeSpec("scarce", params), seed, rows)


def imbalance(
    labels: Mapping[str, np.ndarray],
    tasks: Sequence[Task],
    ratio: Mapping[str, float],
    groups: Sequence[Sequence[str]] | None = None,
    seed: int = 0,
    rows: np.ndarray | None = None,
) -> tuple[EncodedLabels, RegimeRecord]:
    """Disjoint blocks with sizes in the ratio ``ratio[task]``."""
    params = {"ratio": ratio, "groups": groups}
    return apply_regime(labels, tasks, RegimeSpec("imbalance", params), seed, rows)


def overlap(
    labels: Mapping[str, np.ndarray],
    tasks: Sequence[Task],
    fraction: float,
    groups: Sequence[Sequence[str]] | None = None,
    proportions: Sequence[float] | None = None,
    seed: int = 0,
    rows: np.ndarray | None = None,
) -> tuple[EncodedLabels, RegimeRecord]:
    """``fraction`` of the samples co-annotated, the rest split disjointly."""
    params = {"fraction": fraction, "groups": groups, "proportions": proportions}
    return apply_regime(labels, tasks, RegimeSpec("overlap", params), seed, rows)


__all__ = [
    "REGIMES",
    "GroupRecord",
    "RegimeRecord",
    "RegimeSpec",
    "TaskCount",
    "apply_regime",
    "disjoint",
    "full",
    "imbalance",
    "overlap",
    "scarce",
]
