"""Label-hiding regimes: exact counts, determinism, no overlap, records that add up."""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmtl.core.tasks import BinarySetTask, CategoricalTask, Task
from dmtl.data.regimes import (
    RegimeRecord,
    RegimeSpec,
    apply_regime,
    disjoint,
    full,
    imbalance,
    overlap,
    scarce,
)

TASKS: list[Task] = [
    CategoricalTask("digit", [str(i) for i in range(5)]),
    BinarySetTask("shape", ["a", "b", "c"]),
    BinarySetTask("ink", ["heavy", "slanted"]),
]
N = 400


def _labels(n: int = N, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    digit = rng.permutation(np.resize(np.repeat(np.arange(5), [16, 12, 8, 3, 1]), n))
    return {
        "digit": digit.astype(np.int64),
        "shape": rng.integers(0, 2, size=(n, 3)).astype(np.float32),
        "ink": rng.integers(0, 2, size=(n, 2)).astype(np.float32),
    }


def _labelled(values: np.ndarray) -> np.ndarray:
    return values != -1 if values.ndim == 1 else ~np.isnan(values).all(axis=1)


def _check_consistent(
    old: Mapping[str, np.ndarray], new: Mapping[str, np.ndarray], record: RegimeRecord
) -> None:
    """Kept values unchanged, nothing invented, every hidden label counted, JSON round trip."""
    for name, before in old.items():
        after = new[name]
        assert after.dtype == before.dtype and after.shape == before.shape
        obs_before = before != -1 if before.ndim == 1 else ~np.isnan(before)
        obs_after = after != -1 if after.ndim == 1 else ~np.isnan(after)
        assert not (obs_after & ~obs_before).any()
        np.testing.assert_array_equal(after[obs_after], before[obs_after])
        count = record.tasks[name]
        assert count.before == count.after + count.hidden
        assert count.entries_before == count.entries_after + count.entries_hidden
        assert count.before == _labelled(before).sum() and count.after == _labelled(after).sum()
        assert count.entries_before == obs_before.sum()
        assert count.entries_after == obs_after.sum()
    assert json.loads(record.to_json()) == record.to_dict()


def _groups_of_rows(new: Mapping[str, np.ndarray]) -> list[frozenset[str]]:
    return [
        frozenset(name for name, v in new.items() if _labelled(v)[i])
        for i in range(len(next(iter(new.values()))))
    ]


def test_full_hides_nothing() -> None:
    old = _labels()
    new, record = full(old, TASKS)
    for name in old:
        np.testing.assert_array_equal(new[name], old[name])
        assert record.tasks[name].hidden == 0 and record.tasks[name].after == N
    _check_consistent(old, new, record)


def test_disjoint_equal_shares_no_overlap() -> None:
    old = _labels()
    new, record = disjoint(old, TASKS, seed=3)
    _check_consistent(old, new, record)
    sizes = sorted(record.tasks[t].after for t in old)
    assert sizes == [133, 133, 134]
    assert all(len(g) == 1 for g in _groups_of_rows(new))  # every sample in exactly one group
    assert sum(g.size for g in record.groups) == N
    assert record.params == {"groups": [["digit"], ["shape"], ["ink"]], "proportions": [1 / 3] * 3}


def test_disjoint_with_groups_and_proportions() -> None:
    old = _labels()
    new, record = disjoint(old, TASKS, groups=[["digit"], ["shape", "ink"]], proportions=[1, 3])
    _check_consistent(old, new, record)
    assert record.tasks["digit"].after == 100
    assert record.tasks["shape"].after == record.tasks["ink"].after == 300
    assert set(_groups_of_rows(new)) == {frozenset({"digit"}), frozenset({"shape", "ink"})}
    assert [g.name for g in record.groups] == ["digit", "shape+ink"]


def test_same_seed_same_split_different_seed_different_split() -> None:
    old = _labels()
    spec = RegimeSpec("disjoint")
    a, rec_a = apply_regime(old, TASKS, spec, seed=7)
    b, rec_b = apply_regime(old, TASKS, spec, seed=7)
    c, rec_c = apply_regime(old, TASKS, spec, seed=8)
    for name in old:
        np.testing.assert_array_equal(a[name], b[name])
    assert rec_a == rec_b
    assert not np.array_equal(a["digit"], c["digit"])
    assert rec_a.groups[0].indices_sha256 != rec_c.groups[0].indices_sha256


def test_input_is_not_modified() -> None:
    old = _labels()
    copy = {k: v.copy() for k, v in old.items()}
    for spec in (RegimeSpec("disjoint"), RegimeSpec("overlap", {"fraction": 0.5})):
        apply_regime(old, TASKS, spec, seed=0)
    for name in old:
        np.testing.assert_array_equal(old[name], copy[name])


@pytest.mark.parametrize("fraction", [0.01, 0.03, 0.1, 0.5, 1.0])
def test_scarce_categorical_is_stratified(fraction: float) -> None:
    old = _labels()
    new, record = scarce(old, TASKS, task="digit", fraction=fraction, seed=1)
    _check_consistent(old, new, record)
    kept = new["digit"][new["digit"] != -1]
    per_class = np.bincount(kept, minlength=5)
    totals = np.bincount(old["digit"], minlength=5)
    assert (per_class >= 1).all()  # at least one per class
    assert (np.abs(per_class - fraction * totals) < 1).all()  # within one of its share
    forced = int(np.maximum(np.floor(fraction * totals), 1).sum())
    assert per_class.sum() == max(round(fraction * N), forced)
    # others on the rest: no sample keeps digit and another task
    keeps_digit = new["digit"] != -1
    for other in ("shape", "ink"):
        assert not (keeps_digit & _labelled(new[other])).any()
        assert record.tasks[other].after == N - per_class.sum()


def test_scarce_exact_count_when_every_class_is_large_enough() -> None:
    old = _labels()
    new, record = scarce(old, TASKS, task="digit", fraction=0.25)
    assert record.tasks["digit"].after == 100
    np.testing.assert_array_equal(
        np.bincount(new["digit"][new["digit"] != -1], minlength=5), [40, 30, 20, 8, 2]
    )
    # 0.03 * 400 = 12: shares 4.8, 3.6, 2.4, 0.9, 0.3 -> floors, 1 per class, then remainders
    new, record = scarce(old, TASKS, task="digit", fraction=0.03)
    assert record.tasks["digit"].after == 12
    np.testing.assert_array_equal(
        np.bincount(new["digit"][new["digit"] != -1], minlength=5), [5, 3, 2, 1, 1]
    )


def test_scarce_others_on_all_and_binary_task() -> None:
    old = _labels()
    new, record = scarce(old, TASKS, task="digit", fraction=0.05, others_on="all")
    _check_consistent(old, new, record)
    assert record.tasks["shape"].hidden == 0 and record.tasks["ink"].hidden == 0
    new, record = scarce(old, TASKS, task="ink", fraction=0.03)
    _check_consistent(old, new, record)
    assert record.tasks["ink"].after == 12 and record.tasks["digit"].after == N - 12
    assert record.tasks["ink"].entries_after == 24


def test_imbalance_ratio() -> None:
    old = _labels(420)
    new, record = imbalance(old, TASKS, ratio={"digit": 20, "shape": 1, "ink": 1})
    _check_consistent(old, new, record)
    assert [record.tasks[t].after for t in ("digit", "shape", "ink")] == [382, 19, 19]
    assert all(len(g) == 1 for g in _groups_of_rows(new))
    new, record = imbalance(
        old, TASKS, ratio={"digit": 1, "shape": 20, "ink": 20}, groups=[["digit"], ["shape", "ink"]]
    )
    assert record.tasks["digit"].after == 20 and record.tasks["ink"].after == 400


def test_overlap_keeps_a_co_annotated_part() -> None:
    old = _labels()
    new, record = overlap(old, TASKS, fraction=0.1, seed=2)
    _check_consistent(old, new, record)
    groups = _groups_of_rows(new)
    everything = frozenset(old)
    assert sum(g == everything for g in groups) == 40
    assert sum(len(g) == 1 for g in groups) == 360
    assert record.groups[0].name == "co-annotated" and record.groups[0].size == 40
    assert [record.tasks[t].after for t in ("digit", "shape", "ink")] == [160, 160, 160]


def test_rows_limit_the_regime() -> None:
    old = _labels()
    train = np.arange(N) < 300
    new, record = disjoint(old, TASKS, rows=train)
    for name in old:
        np.testing.assert_array_equal(new[name][~train], old[name][~train])
    assert record.num_rows == 300 and record.num_samples == N
    assert sum(record.tasks[t].hidden for t in old) == 2 * 300
    new2, _ = disjoint(old, TASKS, rows=np.flatnonzero(train))
    for name in old:
        np.testing.assert_array_equal(new[name], new2[name])


def test_tasks_without_labels_get_no_block() -> None:
    old = _labels(300)
    old["ink"][:] = np.nan  # e.g. a source annotated for digit and shape only
    new, record = disjoint(old, TASKS)
    assert [g.name for g in record.groups] == ["digit", "shape"]
    assert record.tasks["digit"].after == record.tasks["shape"].after == 150
    _check_consistent(old, new, record)
    new, record = imbalance(old, TASKS, ratio={"digit": 2, "shape": 1})
    assert record.tasks["digit"].after == 200
    new, record = disjoint({"ink": old["ink"]}, TASKS)
    assert record.groups == [] and record.tasks["ink"].before == 0


def test_partial_input_counts_only_existing_labels() -> None:
    old = _labels()
    old["digit"][:50] = -1
    old["shape"][:, 0] = np.nan
    new, record = scarce(old, TASKS, task="digit", fraction=0.1)
    _check_consistent(old, new, record)
    assert record.tasks["digit"].before == 350 and record.tasks["digit"].after == 35
    assert record.tasks["shape"].entries_before == 2 * N


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (RegimeSpec("nope"), "regime name: unknown regime 'nope'"),
        (RegimeSpec("scarce", {"task": "digit"}), "params: .*needs fraction"),
        (RegimeSpec("scarce", {"task": "digit", "fraction": 0}), r"fraction must lie in \(0, 1\]"),
        (RegimeSpec("scarce", {"task": "digit", "fraction": 1.5}), "fraction"),
        (RegimeSpec("scarce", {"task": "colour", "fraction": 0.1}), "task must name.*'colour'"),
        (RegimeSpec("scarce", {"task": "digit", "fraction": 0.1, "others_on": "x"}), "others_on"),
        (RegimeSpec("overlap", {"fraction": -0.1}), "fraction"),
        (RegimeSpec("disjoint", {"frac": 1}), "params: unknown parameters"),
        (RegimeSpec("disjoint", {"groups": [["digit"], ["colour"]]}), r"groups\[1\].*'colour'"),
        (RegimeSpec("disjoint", {"groups": [["digit"], ["shape"]]}), "'ink'.*in no group"),
        (RegimeSpec("disjoint", {"groups": [["digit", "ink"], ["shape", "ink"]]}), "'ink' is in"),
        (RegimeSpec("disjoint", {"proportions": [1, 1]}), "proportions has 2 entries"),
        (RegimeSpec("disjoint", {"proportions": [1, 0, 1]}), r"proportions\[1\]"),
        (RegimeSpec("imbalance", {"ratio": {"digit": 2, "shape": 1}}), "ratio has no entry.*'ink'"),
        (RegimeSpec("imbalance", {"ratio": {"colour": 2}}), "ratio names unknown"),
    ],
)
def test_validation_errors_name_the_field(spec: RegimeSpec, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apply_regime(_labels(40), TASKS, spec, seed=0)


def test_label_validation() -> None:
    labels = _labels(40)
    with pytest.raises(ValueError, match="labels: unknown tasks"):
        apply_regime({**labels, "colour": labels["digit"]}, TASKS, RegimeSpec("full"), 0)
    with pytest.raises(ValueError, match="disagree on the number of samples"):
        apply_regime({**labels, "digit": labels["digit"][:3]}, TASKS, RegimeSpec("full"), 0)
    with pytest.raises(ValueError, match=r"labels\['shape'\].*\(N, 3\)"):
        apply_regime({**labels, "shape": labels["ink"]}, TASKS, RegimeSpec("full"), 0)
    with pytest.raises(ValueError, match="seed"):
        apply_regime(labels, TASKS, RegimeSpec("full"), seed=0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rows"):
        apply_regime(labels, TASKS, RegimeSpec("full"), 0, rows=np.array([0, 0]))


# ---- properties on random label dicts ---------------------------------------------------------


@st.composite
def label_dicts(draw: st.DrawFn) -> tuple[list[Task], dict[str, np.ndarray]]:
    n = draw(st.integers(1, 60))
    num_tasks = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    tasks: list[Task] = []
    labels: dict[str, np.ndarray] = {}
    for t in range(num_tasks):
        missing = draw(st.sampled_from([0.0, 0.0, 0.3]))
        if draw(st.booleans()):
            c = draw(st.integers(2, 6))
            tasks.append(CategoricalTask(f"t{t}", [str(i) for i in range(c)]))
            values = rng.integers(0, c, size=n).astype(np.int64)
            values[rng.random(n) < missing] = -1
        else:
            k = draw(st.integers(1, 4))
            tasks.append(BinarySetTask(f"t{t}", [f"l{i}" for i in range(k)]))
            values = rng.integers(0, 2, size=(n, k)).astype(np.float32)
            values[rng.random((n, k)) < missing] = np.nan
        labels[f"t{t}"] = values
    return tasks, labels


@st.composite
def specs(draw: st.DrawFn, names: list[str]) -> RegimeSpec:
    name = draw(st.sampled_from(["full", "disjoint", "scarce", "imbalance", "overlap"]))
    fraction = draw(st.floats(0.01, 1.0))
    if name == "full":
        return RegimeSpec("full")
    if name == "disjoint":
        return RegimeSpec("disjoint", {"proportions": [draw(st.floats(0.1, 5)) for _ in names]})
    if name == "scarce":
        others = draw(st.sampled_from(["rest", "all"]))
        task = draw(st.sampled_from(names))
        return RegimeSpec("scarce", {"task": task, "fraction": fraction, "others_on": others})
    if name == "imbalance":
        return RegimeSpec("imbalance", {"ratio": {t: draw(st.integers(1, 20)) for t in names}})
    return RegimeSpec("overlap", {"fraction": fraction})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seed=st.integers(0, 1000))
def test_properties(data: st.DataObject, seed: int) -> None:
    tasks, labels = data.draw(label_dicts())
    names = [t.name for t in tasks]
    spec = data.draw(specs(names))
    new, record = apply_regime(labels, tasks, spec, seed)
    _check_consistent(labels, new, record)
    again, record_again = apply_regime(labels, tasks, spec, seed)
    assert record_again == record
    for name in names:
        np.testing.assert_array_equal(again[name], new[name])
    n = len(labels[names[0]])
    assert record.num_samples == n
    any_label = any(_labelled(v).any() for v in labels.values())
    if spec.name in ("disjoint", "imbalance"):
        assert all(len(g) <= 1 for g in _groups_of_rows(new))
        assert sum(g.size for g in record.groups) == (n if any_label else 0)
    if spec.name == "overlap":
        assert record.groups[0].size == round(spec.params["fraction"] * n)
        assert sum(g.size for g in record.groups[1:]) == (n - record.groups[0].size) * any_label
    if spec.name == "scarce":
        task = spec.params["task"]
        kept = _labelled(new[task])
        if spec.params["others_on"] == "rest":
            for other in names:
                if other != task:
                    assert not (kept & _labelled(new[other])).any()
        before = int(_labelled(labels[task]).sum())
        assert (kept.sum() >= 1) == (before >= 1)
        assert kept.sum() >= min(before, round(spec.params["fraction"] * before))


def test_unlabelled_hides_every_task_on_a_share_and_applies_the_inner_regime() -> None:
    labels = _labels()
    spec = RegimeSpec("unlabelled", {"fraction": 0.25, "then": {
        "name": "scarce", "params": {"task": "digit", "fraction": 0.1}}})
    new, record = apply_regime(labels, TASKS, spec, seed=3)
    _check_consistent(labels, new, record)
    groups = _groups_of_rows(new)
    assert sum(g == frozenset() for g in groups) == round(0.25 * N)
    # the rest: the digit on 10% of its (labelled) rows, the other tasks on the others
    assert sum(g == frozenset({"digit"}) for g in groups) == round(0.1 * (N - round(0.25 * N)))
    assert record.groups[0].name == "unlabelled" and record.groups[0].size == round(0.25 * N)
    assert record.params["then"]["name"] == "scarce"
    plain, _ = apply_regime(labels, TASKS, RegimeSpec("unlabelled"), seed=3)
    assert sum(g == frozenset() for g in _groups_of_rows(plain)) == N // 2


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"fraction": 0.0}, "unlabelled: fraction must lie in"),
        ({"then": "scarce"}, "then must be a regime"),
        ({"then": {"name": "unlabelled"}}, "not unlabelled"),
        ({"then": {"name": "scarce", "params": {"task": "digit"}}}, "needs fraction"),
        ({"then": {"name": "full", "params": {"x": 1}}}, "has no parameters"),
    ],
)
def test_unlabelled_errors(params: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apply_regime(_labels(), TASKS, RegimeSpec("unlabelled", params), seed=0)
