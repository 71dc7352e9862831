"""Masked per-task metrics: hand-computed values, n/a cases, module/functional agreement, DDP."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_f1_score,
    multilabel_accuracy,
    multilabel_f1_score,
)

from dmtl.core.labels import PartialLabels, TaskLabels, collate_labels
from dmtl.core.metrics import (
    MultiTaskMetrics,
    binary_set_metrics,
    categorical_metrics,
    flatten_metrics,
)
from dmtl.core.tasks import BinarySetTask, CategoricalTask, RegressionTask

ABC = CategoricalTask("letter", ["a", "b", "c"])
LABELS3 = BinarySetTask("attr", ["L1", "L2", "L3"])


def one_hot_logits(classes: list[int], num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(classes), num_classes).float() * 4.0 - 2.0


def binary_logits(predictions: list[list[int]]) -> torch.Tensor:
    return torch.tensor(predictions, dtype=torch.float32) * 4.0 - 2.0


# ---- categorical ------------------------------------------------------------------------------


def categorical_example() -> tuple[torch.Tensor, TaskLabels]:
    # sample:     0  1  2  3  4(unlabelled)  5
    predictions = [0, 1, 2, 2, 0, 1]
    targets = [0, 0, 2, 1, 1, 1]
    mask = [True, True, True, True, False, True]
    return one_hot_logits(predictions, 3), TaskLabels(torch.tensor(targets), torch.tensor(mask))


def test_categorical_hand_computed() -> None:
    logits, labels = categorical_example()
    result = categorical_metrics(logits, labels, ABC)
    # labelled: 0,1,2,3,5; correct: 0,2,5 -> 3/5
    assert result["accuracy"] == pytest.approx(3 / 5)
    # a: tp 1, fp 0, fn 1; b: tp 1, fp 1, fn 1; c: tp 1, fp 1, fn 0
    assert result["f1/a"] == pytest.approx(2 / 3)
    assert result["f1/b"] == pytest.approx(1 / 2)
    assert result["f1/c"] == pytest.approx(2 / 3)
    assert result["f1_macro"] == pytest.approx(11 / 18)
    assert result["num_labelled"] == 5
    assert list(result) == ABC.metric_names()


def test_categorical_ignores_unlabelled_rows_entirely() -> None:
    logits, labels = categorical_example()
    other = logits.clone()
    other[4] = torch.tensor([-5.0, -5.0, 9.0])  # change only the unlabelled row
    targets = labels.target.clone()
    targets[4] = 2
    assert categorical_metrics(other, TaskLabels(targets, labels.mask), ABC) == (
        categorical_metrics(logits, labels, ABC)
    )


def test_categorical_nothing_labelled_is_none_not_zero() -> None:
    labels = TaskLabels(torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.bool))
    result = categorical_metrics(torch.randn(3, 3), labels, ABC)
    assert result == {
        "accuracy": None,
        "f1_macro": None,
        "f1/a": None,
        "f1/b": None,
        "f1/c": None,
        "num_labelled": 0,
    }


def test_categorical_class_never_seen_nor_predicted_is_none_and_left_out() -> None:
    logits = one_hot_logits([0, 1], 3)
    labels = TaskLabels(torch.tensor([0, 0]), torch.tensor([True, True]))
    result = categorical_metrics(logits, labels, ABC)
    assert result["f1/c"] is None
    assert result["f1/a"] == pytest.approx(2 / 3)
    assert result["f1/b"] == 0.0
    assert result["f1_macro"] == pytest.approx(1 / 3)  # mean over a and b only
    with_zero = categorical_metrics(logits, labels, ABC, zero_division=0.0)
    assert with_zero["f1/c"] == 0.0
    assert with_zero["f1_macro"] == pytest.approx(2 / 9)


def test_categorical_per_class_can_be_left_out() -> None:
    logits, labels = categorical_example()
    assert list(categorical_metrics(logits, labels, ABC, per_class=False)) == [
        "accuracy",
        "f1_macro",
        "num_labelled",
    ]


# ---- binary set -------------------------------------------------------------------------------


def binary_example() -> tuple[torch.Tensor, TaskLabels]:
    predictions = [[1, 0, 1], [1, 1, 0], [0, 1, 1], [0, 0, 1], [1, 1, 1]]
    targets = [[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 0, 0], [1, 1, 1]]
    mask = [
        [True, True, False],
        [True, True, False],
        [True, True, False],
        [True, False, False],
        [False, False, False],  # sample 4: nothing observed
    ]  # L3 never observed
    labels = TaskLabels(torch.tensor(targets, dtype=torch.float32), torch.tensor(mask))
    return binary_logits(predictions), labels


def test_binary_hand_computed_with_per_label_masks() -> None:
    logits, labels = binary_example()
    result = binary_set_metrics(logits, labels, LABELS3)
    # L1 over samples 0-3: pred 1 1 0 0, true 1 0 0 1 -> tp 1, fp 1, fn 1
    assert result["f1/L1"] == pytest.approx(1 / 2)
    # L2 over samples 0-2: pred 0 1 1, true 0 1 0 -> tp 1, fp 1, fn 0
    assert result["f1/L2"] == pytest.approx(2 / 3)
    assert result["f1/L3"] is None
    assert result["f1_mean"] == pytest.approx(7 / 12)
    # 7 observed entries, 3 wrong
    assert result["accuracy"] == pytest.approx(4 / 7)
    assert result["num_labelled"] == 4
    assert list(result) == ["accuracy", "f1_mean", "f1/L1", "f1/L2", "f1/L3", "num_labelled"]


def test_binary_nothing_observed_is_none() -> None:
    labels = TaskLabels(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    result = binary_set_metrics(torch.randn(2, 3), labels, LABELS3, per_label=False)
    assert result == {"accuracy": None, "f1_mean": None, "num_labelled": 0}


def test_binary_observed_label_without_positives_or_predictions() -> None:
    task = BinarySetTask("au", ["AU1", "AU2"])
    logits = binary_logits([[1, 0], [0, 0]])
    labels = TaskLabels(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.ones(2, 2, dtype=torch.bool))
    result = binary_set_metrics(logits, labels, task)
    assert result["f1/AU1"] == 1.0
    assert result["f1/AU2"] is None  # 0/0: undefined, left out of the mean
    assert result["f1_mean"] == 1.0
    assert result["accuracy"] == 1.0
    zero = binary_set_metrics(logits, labels, task, zero_division=0.0)
    assert zero["f1/AU2"] == 0.0
    assert zero["f1_mean"] == 0.5


def test_binary_never_observed_stays_none_with_zero_division() -> None:
    logits, labels = binary_example()
    assert binary_set_metrics(logits, labels, LABELS3, zero_division=0.0)["f1/L3"] is None


def test_binary_threshold_is_strict_on_probabilities() -> None:
    task = BinarySetTask("au", ["AU1"])
    labels = TaskLabels(torch.tensor([[1.0]]), torch.tensor([[True]]))
    assert binary_set_metrics(torch.zeros(1, 1), labels, task)["f1/AU1"] == 0.0  # p = 0.5
    logit_07 = math.log(0.7 / 0.3) + 1e-3
    high = binary_set_metrics(torch.tensor([[logit_07]]), labels, task, threshold=0.7)
    assert high["f1/AU1"] == 1.0


# ---- agreement with torchmetrics ------------------------------------------------------------


def test_categorical_agrees_with_torchmetrics() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 5, generator=generator)
    target = torch.randint(0, 5, (200,), generator=generator)
    mask = torch.rand(200, generator=generator) > 0.3
    task = CategoricalTask("t", list("vwxyz"))
    result = categorical_metrics(logits, TaskLabels(target, mask), task)
    ignored = torch.where(mask, target, -1)
    reference = {
        "accuracy": multiclass_accuracy(logits, ignored, 5, average="micro", ignore_index=-1),
        "f1_macro": multiclass_f1_score(logits, ignored, 5, average="macro", ignore_index=-1),
    }
    for key, value in reference.items():
        assert result[key] == pytest.approx(float(value), abs=1e-6)
    per_class = multiclass_f1_score(logits, ignored, 5, average="none", ignore_index=-1)
    assert [result[f"f1/{c}"] for c in "vwxyz"] == pytest.approx(per_class.tolist(), abs=1e-6)


def test_binary_agrees_with_torchmetrics() -> None:
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(300, 4, generator=generator)
    target = (torch.rand(300, 4, generator=generator) > 0.6).float()
    mask = torch.rand(300, 4, generator=generator) > 0.4
    result = binary_set_metrics(logits, TaskLabels(target, mask), LABELS3_4)
    ignored = torch.where(mask, target.long(), -1)
    probs = torch.sigmoid(logits)
    per_label = multilabel_f1_score(probs, ignored, 4, average="none", ignore_index=-1)
    assert [result[f"f1/{n}"] for n in LABELS3_4.labels] == pytest.approx(per_label.tolist())
    assert result["f1_mean"] == pytest.approx(float(per_label.mean()))
    accuracy = multilabel_accuracy(probs, ignored, 4, average="micro", ignore_index=-1)
    assert result["accuracy"] == pytest.approx(float(accuracy))


LABELS3_4 = BinarySetTask("attr4", ["p", "q", "r", "s"])


# ---- modules ----------------------------------------------------------------------------------


def test_module_accumulates_like_the_functional_form_on_the_whole_data() -> None:
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(90, 4, generator=generator)
    target = (torch.rand(90, 4, generator=generator) > 0.5).float()
    mask = torch.rand(90, 4, generator=generator) > 0.5
    metric = LABELS3_4.metric()
    for rows in torch.arange(90).split(25):
        metric.update(logits[rows], TaskLabels(target[rows], mask[rows]))
    assert metric.compute() == binary_set_metrics(logits, TaskLabels(target, mask), LABELS3_4)

    cat_logits = torch.randn(90, 3, generator=generator)
    cat_target = torch.randint(0, 3, (90,), generator=generator)
    cat_mask = torch.rand(90, generator=generator) > 0.5
    cat_metric = ABC.metric()
    for rows in torch.arange(90).split(7):
        cat_metric.update(cat_logits[rows], TaskLabels(cat_target[rows], cat_mask[rows]))
    expected = categorical_metrics(cat_logits, TaskLabels(cat_target, cat_mask), ABC)
    assert cat_metric.compute() == expected


def test_module_reset_and_na() -> None:
    logits, labels = categorical_example()
    metric = ABC.metric()
    metric.update(logits, labels)
    assert metric.compute()["accuracy"] == pytest.approx(0.6)
    metric.reset()
    metric.update(logits, TaskLabels(labels.target, torch.zeros_like(labels.mask)))
    assert metric.compute()["accuracy"] is None
    assert metric.compute()["num_labelled"] == 0


def test_states_are_summed_across_processes() -> None:
    metric = LABELS3.metric()
    assert set(metric._defaults) == {"tp", "fp", "fn", "observed", "num_labelled"}
    assert all(
        getattr(fx, "__name__", None) == "dim_zero_sum" for fx in metric._reductions.values()
    )


def test_bad_logits_shape_names_the_task() -> None:
    logits, labels = categorical_example()
    with pytest.raises(ValueError, match="letter"):
        categorical_metrics(logits[:, :2], labels, ABC)
    with pytest.raises(ValueError, match="rows"):
        categorical_metrics(logits[:3], labels, ABC)


def test_multi_task_metrics_names_and_missing_tasks() -> None:
    tasks = [ABC, LABELS3]
    metrics = MultiTaskMetrics(tasks)
    cat_logits, cat_labels = categorical_example()
    # a batch labelled only for the categorical task (binary task absent from the labels)
    metrics.update(
        {"letter": cat_logits, "attr": torch.zeros(6, 3), "unknown": torch.zeros(6, 1)},
        PartialLabels(tasks, {"letter": cat_labels}),
    )
    nested = metrics.compute()
    assert nested["letter"] == categorical_metrics(cat_logits, cat_labels, ABC)
    assert nested["attr"]["f1_mean"] is None and nested["attr"]["num_labelled"] == 0
    flat = metrics.compute_flat()
    assert flat["letter/accuracy"] == pytest.approx(0.6)
    assert flat["letter/f1/b"] == pytest.approx(0.5)
    assert "attr/f1/L2" in flat and flat["attr/f1_mean"] is None
    assert "attr/f1_mean" not in metrics.compute_flat(skip_missing=True)
    assert metrics.primary_names() == {"letter": "letter/accuracy", "attr": "attr/f1_mean"}
    assert (ABC.primary_metric, LABELS3.primary_metric) == ("accuracy", "f1_mean")

    bin_logits, bin_labels = binary_example()
    metrics.reset()
    metrics.update({"attr": bin_logits}, PartialLabels(tasks, {"attr": bin_labels}))
    nested = metrics.compute()
    assert nested["attr"]["f1_mean"] == pytest.approx(7 / 12)
    assert nested["letter"]["accuracy"] is None  # no logits for it since the reset


def test_multi_task_metrics_from_collated_batches() -> None:
    tasks = [ABC, LABELS3]
    metrics = MultiTaskMetrics(tasks, per_output=False)
    batches: list[list[dict[str, object]]] = [
        [{"letter": "a"}, {"attr": {"L1": 1}}],
        [{"letter": "b", "attr": {"L2": 0}}],
    ]
    for samples in batches:
        n = len(samples)
        logits = {"letter": one_hot_logits([0] * n, 3), "attr": binary_logits([[1, 1, 1]] * n)}
        metrics.update(logits, collate_labels(tasks, samples))
    result = metrics.compute()
    assert result["letter"]["accuracy"] == 0.5
    assert result["letter"]["num_labelled"] == 2
    assert result["attr"]["accuracy"] == 0.5  # L1: 1 vs 1 right; L2: 1 vs 0 wrong
    assert result["attr"]["num_labelled"] == 2


def test_flatten_metrics_keeps_class_names_with_slashes() -> None:
    flat = flatten_metrics({"fashion": {"f1/T-shirt/top": 0.5}})
    task, key = next(iter(flat)).split("/", 1)
    assert (task, key) == ("fashion", "f1/T-shirt/top")


# ---- DDP (two CPU processes, gloo) ------------------------------------------------------------


def _ddp_worker(rank: int, world: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        logits, labels = binary_example()
        rows = torch.arange(rank, logits.shape[0], world)
        metric = LABELS3.metric()
        metric.update(logits[rows], TaskLabels(labels.target[rows], labels.mask[rows]))
        Path(out, f"{rank}.json").write_text(json.dumps(metric.compute()))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_ddp_compute_sums_counts_over_processes(tmp_path: Path) -> None:
    mp.start_processes(
        _ddp_worker,
        args=(2, str(tmp_path / "store"), str(tmp_path)),
        nprocs=2,
        start_method="fork",
    )
    logits, labels = binary_example()
    expected = binary_set_metrics(logits, labels, LABELS3)
    for rank in range(2):
        assert json.loads((tmp_path / f"{rank}.json").read_text()) == expected


def test_per_output_threshold_keeps_per_class_values_of_small_tasks_only() -> None:
    small = CategoricalTask("small", ["a", "b"])
    large = CategoricalTask("large", [str(i) for i in range(5)])
    metrics = MultiTaskMetrics([small, large], per_output=3)
    labels = collate_labels([small, large], [{"small": 0, "large": 4}])
    metrics.update({"small": torch.tensor([[2.0, 0.0]]), "large": torch.eye(5)[4:5]}, labels)
    flat = metrics.compute_flat()
    assert "small/f1/a" in flat and "small/f1_macro" in flat
    assert not any(k.startswith("large/f1/") for k in flat)
    assert flat["large/accuracy"] == 1.0 and "large/f1_macro" in flat


# ---- one process without torchmetrics (dmtl evaluate) ------------------------------------------


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), batches=st.integers(1, 4))
def test_summed_metrics_equal_the_torchmetrics_ones_to_the_last_digit(
    seed: int, batches: int
) -> None:
    """``synchronised=False`` (:class:`SummedMetrics`, no torchmetrics) gives exactly the
    values of the torchmetrics states, for every kind, over several batches and a reset."""
    tasks = [ABC, LABELS3, RegressionTask("va", ["valence", "arousal"])]
    synced = MultiTaskMetrics(tasks, per_output=3)
    summed = MultiTaskMetrics(tasks, per_output=3, synchronised=False)
    generator = torch.Generator().manual_seed(seed)
    for step in range(batches + 1):
        if step == 1:  # the first batch is forgotten by both
            synced.reset()
            summed.reset()
        n = int(torch.randint(1, 9, (), generator=generator))
        logits = {t.name: torch.randn(n, t.num_outputs, generator=generator) for t in tasks}
        labels = PartialLabels(tasks, {
            "letter": TaskLabels(torch.randint(0, 3, (n,), generator=generator),
                                 torch.rand(n, generator=generator) < 0.7),
            "attr": TaskLabels((torch.rand(n, 3, generator=generator) < 0.5).float(),
                               torch.rand(n, 3, generator=generator) < 0.6),
            "va": TaskLabels(torch.randn(n, 2, generator=generator),
                             torch.rand(n, 2, generator=generator) < 0.8),
        })
        for metrics in (synced, summed):
            metrics.update(logits, labels)
    want, got = synced.compute_flat(), summed.compute_flat()
    assert list(got) == list(want)
    assert got == want  # exact: the same kernels, the same sums


def test_summed_metrics_import_no_torchmetrics() -> None:
    """The one-process path loads neither torchmetrics nor what its package root imports."""
    code = (
        "import sys, torch\n"
        "from dmtl.core.metrics import MultiTaskMetrics\n"
        "from dmtl.core.tasks import CategoricalTask\n"
        "from dmtl.core.labels import collate_labels\n"
        "task = CategoricalTask('d', ['0', '1'])\n"
        "metrics = MultiTaskMetrics([task], synchronised=False)\n"
        "metrics.update({'d': torch.eye(2)}, collate_labels([task], [{'d': 0}, {'d': 1}]))\n"
        "assert metrics.compute_flat()['d/accuracy'] == 1.0\n"
        "print(sorted(m for m in ('torchmetrics', 'torchvision', 'scipy') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parents[2] / "src"),
                      os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
