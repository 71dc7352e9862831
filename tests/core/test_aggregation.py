"""Gradient aggregation through TorchJD: hand-made rows, exactness of ``sum``, absent tasks.

Hand-made rows. The trunk is the identity on a parameter, ``Z = theta`` (N = 1, D = 2), and
task t's loss is ``L_t = <Z, h_t>`` with its head ``h_t``: the Jacobian rows at the features
and at the trunk's parameters are both the ``h_t``, and each head's gradient is ``Z``.

UPGrad, rows ``g1 = (1, 0)``, ``g2 = (-1, 1)`` (``g1 . g2 = -1``: a conflict). Each row is
projected onto the dual cone ``{x : g1 . x >= 0, g2 . x >= 0}``::

    g1 -> g1 - (g1.g2 / |g2|^2) g2 = (1, 0) + (-1, 1) / 2 = (1/2, 1/2)
    g2 -> g2 - (g2.g1 / |g1|^2) g1 = (-1, 1) + (1, 0)     = (0, 1)
    mean                                                  = (1/4, 3/4) = 1 g1 + 3/4 g2

MGDA, rows ``g1 = (1, 0)``, ``g2 = (0, 2)``: the min-norm point of the segment,
``min_a |a g1 + (1 - a) g2|^2 = a^2 + 4 (1 - a)^2`` at ``a = 4/5``: ``(4/5, 2/5)``,
weights ``(4/5, 1/5)``. With a third, zero row the hull contains 0 and MGDA would return 0.

TorchJD regularises the Gramian (1e-4) before UPGrad's quadratic programme, hence the 1e-3
tolerance there; MGDA's Frank-Wolfe step is exact on a segment.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from torch import Tensor, nn
from torchjd.aggregation import MGDA, Aggregator, Mean, UPGrad

from dmtl.core.aggregation import AGGREGATORS, backward_tasks, build_aggregator
from dmtl.errors import MissingDependencyError, SpecError

F64 = torch.float64
LEVELS = ("features", "parameters")
OPTIONS: dict[str, dict[str, float]] = {"cagrad": {"c": 0.5}, "fairgrad": {"alpha": 1.0}}


class HandMade:
    """``Z = theta`` (shared), ``L_t = <Z, h_t>`` (heads ``h_t``), in float64."""

    def __init__(self, rows: dict[str, tuple[float, float]], theta=(0.3, -0.2)) -> None:
        self.theta = torch.tensor(theta, dtype=F64, requires_grad=True)
        self.heads = {t: torch.tensor(r, dtype=F64, requires_grad=True) for t, r in rows.items()}

    def backward(self, aggregator: Aggregator, level: str, **kwargs) -> dict[str, float]:
        features = self.theta.reshape(1, 2) * 1.0
        losses = {t: (features * h).sum() for t, h in self.heads.items()}
        return backward_tasks(
            losses, features, aggregator, [self.theta], self.heads, level=level, **kwargs
        )


@pytest.mark.parametrize("level", LEVELS)
def test_upgrad_on_two_conflicting_rows_by_hand(level: str) -> None:
    net = HandMade({"a": (1.0, 0.0), "b": (-1.0, 1.0)})
    weights = net.backward(build_aggregator("upgrad"), level)
    assert net.theta.grad.tolist() == pytest.approx([0.25, 0.75], abs=1e-3)
    assert weights == pytest.approx({"a": 1.0, "b": 0.75}, abs=1e-3)
    for head in net.heads.values():  # each head: its own task's gradient, d<Z, h>/dh = Z
        assert head.grad.tolist() == pytest.approx([0.3, -0.2], abs=1e-15)


@pytest.mark.parametrize("level", LEVELS)
def test_mgda_min_norm_point_by_hand(level: str) -> None:
    net = HandMade({"a": (1.0, 0.0), "b": (0.0, 2.0)})
    weights = net.backward(build_aggregator("mgda"), level)
    assert net.theta.grad.tolist() == pytest.approx([0.8, 0.4], abs=1e-12)
    assert weights == pytest.approx({"a": 0.8, "b": 0.2}, abs=1e-12)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(("name", "expected"), [("mgda", [0.8, 0.4]), ("upgrad", [0.5, 1.0])])
def test_a_task_without_labels_takes_no_part(level: str, name: str, expected: list) -> None:
    """A third task with no label (loss ``<Z, 0>`` = 0, a zero row) changes nothing.

    UPGrad on ``(1, 0)``, ``(0, 2)``: no conflict, each row is its own projection, mean
    ``(1/2, 1)``."""
    net = HandMade({"a": (1.0, 0.0), "b": (0.0, 2.0), "none": (0.0, 0.0)})
    weights = net.backward(build_aggregator(name), level)
    assert net.theta.grad.tolist() == pytest.approx(expected, abs=1e-3)
    assert torch.isfinite(net.theta.grad).all()
    assert weights["none"] == 0.0
    assert net.heads["none"].grad.tolist() == pytest.approx([0.3, -0.2], abs=1e-15)


def test_why_zero_rows_are_dropped() -> None:
    """Given to TorchJD as is, a zero row stops MGDA and shrinks UPGrad by 2/3."""
    rows = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]], dtype=F64)
    assert MGDA()(rows).abs().max().item() < 1e-3
    assert UPGrad()(rows).tolist() == pytest.approx([1 / 3, 2 / 3], abs=1e-3)


@pytest.mark.parametrize("level", LEVELS)
def test_present_false_drops_a_task_that_has_a_gradient(level: str) -> None:
    net = HandMade({"a": (1.0, 0.0), "b": (-1.0, 1.0)})
    weights = net.backward(build_aggregator("mgda"), level, present={"b": False})
    assert net.theta.grad.tolist() == pytest.approx([1.0, 0.0], abs=1e-12)
    assert weights == {"a": 1.0, "b": 0.0}


@pytest.mark.parametrize("level", LEVELS)
def test_every_task_absent_gives_a_zero_trunk_gradient(level: str) -> None:
    net = HandMade({"a": (0.0, 0.0), "b": (0.0, 0.0)})
    weights = net.backward(build_aggregator("upgrad"), level)
    assert net.theta.grad.tolist() == [0.0, 0.0]
    assert weights == {"a": 0.0, "b": 0.0}


# --- a small MLP with three tasks ---------------------------------------------------------


class ThreeTasks(nn.Module):
    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.Tanh())
        self.heads = nn.ModuleDict(
            {"a": nn.Linear(8, 3), "b": nn.Linear(8, 2), "c": nn.Linear(8, 4)}
        )
        self.to(dtype)
        generator = torch.Generator().manual_seed(1)
        self.x = torch.randn(10, 6, generator=generator, dtype=dtype)
        self.y = torch.randint(0, 2, (10,), generator=generator)

    def losses(self, absent: str | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        features = self.backbone(self.x)
        losses = {}
        for name, head in self.heads.items():
            z = head(features)
            losses[name] = (
                z.sum() * 0.0 if name == absent else nn.functional.cross_entropy(z, self.y)
            )
        return features, losses

    def grads(self) -> list[Tensor]:
        return [p.grad.clone() for p in self.parameters()]

    def backward_tasks(self, aggregator: Aggregator, level: str, absent: str | None = None):
        features, losses = self.losses(absent)
        self.zero_grad(set_to_none=True)
        return backward_tasks(
            losses, features, aggregator, self.backbone.parameters(), self.heads, level=level
        )

    def plain_backward(self, scale_trunk: float = 1.0, absent: str | None = None) -> list[Tensor]:
        _, losses = self.losses(absent)
        self.zero_grad(set_to_none=True)
        torch.stack(list(losses.values())).sum().backward()
        for param in self.backbone.parameters():
            param.grad *= scale_trunk
        return self.grads()


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("absent", [None, "b"])
def test_sum_is_exactly_plain_backward(level: str, absent: str | None) -> None:
    model = ThreeTasks()
    expected = model.plain_backward(absent=absent)
    weights = model.backward_tasks(build_aggregator("sum"), level, absent)
    assert weights == {"a": 1.0, "b": 1.0, "c": 1.0}
    for got, want in zip(model.grads(), expected, strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("level", LEVELS)
def test_the_jacobian_paths_are_exact(level: str) -> None:
    """``mean`` through the Jacobian (features or parameters): trunk gets ``grad(sum L) / 3``,
    every head its own task's gradient, in float64."""
    model = ThreeTasks(F64)
    expected = model.plain_backward(scale_trunk=1 / 3)
    weights = model.backward_tasks(Mean(), level)
    assert weights == pytest.approx(dict.fromkeys("abc", 1 / 3), abs=1e-15)
    for got, want in zip(model.grads(), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("level", LEVELS)
def test_heads_get_their_plain_gradient_even_when_a_loss_reads_another_head(level: str) -> None:
    """Distribution matching without stop-gradient: task b's loss also reads head a."""
    model = ThreeTasks(F64)
    features = model.backbone(model.x)
    z = {name: head(features) for name, head in model.heads.items()}
    losses = {
        "a": nn.functional.cross_entropy(z["a"], model.y),
        "b": (z["b"].softmax(1)[:, :1] * z["a"].log_softmax(1)[:, :1]).mean().neg(),
        "c": nn.functional.cross_entropy(z["c"], model.y),
    }
    heads = list(model.heads.parameters())
    expected = torch.autograd.grad(
        torch.stack(list(losses.values())).sum(), heads, retain_graph=True
    )
    backward_tasks(
        losses,
        features,
        build_aggregator("upgrad"),
        model.backbone.parameters(),
        heads,
        level=level,
    )
    for param, want in zip(heads, expected, strict=True):
        torch.testing.assert_close(param.grad, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_every_aggregator_runs_with_a_task_without_labels(name: str) -> None:
    try:
        aggregator = build_aggregator(name, **OPTIONS.get(name, {}))
    except MissingDependencyError:
        pytest.skip(f"{name}: optional dependency not installed")
    model = ThreeTasks()
    weights = model.backward_tasks(aggregator, "features", absent="c")
    for param in model.parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all()
    assert weights.get("c", 0.0) == (1.0 if name == "sum" else 0.0)  # sum: 1 for every task


@pytest.mark.parametrize("name", sorted(set(AGGREGATORS) - {"fairgrad"}))
def test_aggregators_are_positively_homogeneous_so_loss_scaling_is_exact(name: str) -> None:
    """``A(cJ) = c A(J)``: a GradScaler's scale (a power of 2) passes through exactly."""
    try:
        aggregator = build_aggregator(name, **OPTIONS.get(name, {}))
    except MissingDependencyError:
        pytest.skip(f"{name}: optional dependency not installed")
    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(3, 40, dtype=F64, generator=generator)
    rows[1] = 0.3 * rows[1] - 0.5 * rows[0]  # a conflict
    torch.manual_seed(1)  # graddrop and random draw random numbers
    scaled = aggregator(rows * 2.0**16)
    torch.manual_seed(1)
    torch.testing.assert_close(scaled, aggregator(rows) * 2.0**16, rtol=1e-12, atol=0)


def test_fairgrad_is_not_homogeneous() -> None:
    """Documented: its result scales as ``c^((1 - alpha) / (1 + alpha))``, ``c^(-1/3)`` here."""
    aggregator = build_aggregator("fairgrad", alpha=2.0)
    rows = torch.tensor([[1.0, 0.0], [-0.5, 1.0]], dtype=F64)
    ratio = aggregator(rows * 8.0).norm() / aggregator(rows).norm()
    assert ratio.item() == pytest.approx(8.0 ** (-1 / 3), rel=1e-3)


@pytest.mark.parametrize("level", LEVELS)
def test_autocast_bfloat16_on_cpu(level: str) -> None:
    model = ThreeTasks()
    model.backward_tasks(build_aggregator("upgrad"), level)
    reference = model.grads()
    features, losses = None, None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features, losses = model.losses()
    assert features.dtype == torch.bfloat16
    model.zero_grad(set_to_none=True)
    backward_tasks(
        losses,
        features,
        build_aggregator("upgrad"),
        model.backbone.parameters(),
        model.heads,
        level=level,
    )
    for got, want in zip(model.grads(), reference, strict=True):
        assert got.dtype == torch.float32
        assert torch.isfinite(got).all()
        cosine = torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0)
        assert cosine.item() > 0.98


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_called_inside_the_autocast_region(level: str, dtype: torch.dtype) -> None:
    """Lightning runs ``training_step`` (forward and this call) inside autocast."""
    model = ThreeTasks()
    with torch.autocast("cpu", dtype=dtype):
        features, losses = model.losses()
        weights = backward_tasks(
            losses, features, build_aggregator("upgrad"), model.backbone, model.heads, level=level
        )
    assert set(weights) == {"a", "b", "c"}
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def scaled_float16_step(model: ThreeTasks, level: str, init_scale: float) -> float:
    """One SGD step under CPU float16 autocast with a GradScaler; returns the new scale."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    with torch.autocast("cpu", dtype=torch.float16):
        features, losses = model.losses()
    assert features.dtype == torch.float16
    scaled = dict(zip(losses, scaler.scale(list(losses.values())), strict=True))
    model.zero_grad(set_to_none=True)
    backward_tasks(
        scaled, features, build_aggregator("upgrad"), model.backbone, model.heads, level=level
    )
    scaler.step(optimizer)
    scaler.update()
    return scaler.get_scale()


@pytest.mark.parametrize("level", LEVELS)
def test_float16_grad_scaler_steps_like_float32(level: str) -> None:
    """Scale the losses, aggregate, let ``scaler.step`` unscale: the step matches float32."""
    reference = ThreeTasks()
    before = [p.detach().clone() for p in reference.parameters()]
    reference.backward_tasks(build_aggregator("upgrad"), level)
    torch.optim.SGD(reference.parameters(), lr=0.1).step()
    model = ThreeTasks()
    assert scaled_float16_step(model, level, init_scale=2.0**10) == 2.0**10
    for p, q, start in zip(model.parameters(), reference.parameters(), before, strict=True):
        step, expected = (p.detach() - start).flatten(), (q.detach() - start).flatten()
        assert torch.nn.functional.cosine_similarity(step, expected, dim=0).item() > 0.99


@pytest.mark.parametrize("level", LEVELS)
def test_float16_overflow_skips_the_step_and_lowers_the_scale(level: str) -> None:
    model = ThreeTasks()
    before = [p.detach().clone() for p in model.parameters()]
    assert scaled_float16_step(model, level, init_scale=2.0**40) == 2.0**39
    for p, start in zip(model.parameters(), before, strict=True):
        assert torch.equal(p.detach(), start)


@pytest.mark.parametrize("level", LEVELS)
def test_an_overflowing_row_reaches_grad_so_a_grad_scaler_skips_the_step(level: str) -> None:
    model = ThreeTasks()
    features, losses = model.losses()
    losses["b"] = losses["b"] * math.inf
    backward_tasks(
        losses,
        features,
        build_aggregator("upgrad"),
        model.backbone.parameters(),
        model.heads,
        level=level,
    )
    trunk_finite = [torch.isfinite(p.grad).all().item() for p in model.backbone.parameters()]
    assert not all(trunk_finite)


def test_losses_without_a_graph_and_a_frozen_trunk() -> None:
    model = ThreeTasks()
    with torch.no_grad():
        features = model.backbone(model.x)
    losses = {n: nn.functional.cross_entropy(h(features), model.y) for n, h in model.heads.items()}
    losses["c"] = torch.tensor(0.0)  # no graph at all: ignored
    backward_tasks(
        losses, features, build_aggregator("upgrad"), model.backbone.parameters(), model.heads
    )
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.heads["a"].weight.grad is not None
    assert model.heads["c"].weight.grad is None


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "error", "message"),
    [
        ("nash_mtl", {}, SpecError, "unknown aggregator 'nash_mtl'; expected one of: sum, mean"),
        (
            "mgda",
            {"eps": 1.0},
            SpecError,
            "'mgda' has no option 'eps'; options: epsilon, max_iters",
        ),
        ("fairgrad", {}, SpecError, "'fairgrad' needs option alpha"),
        ("mgda", {"epsilon": -1.0}, SpecError, "'mgda': epsilon must be positive"),
    ],
)
def test_build_aggregator_errors(name: str, options: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        build_aggregator(name, **options)


def test_a_missing_optional_dependency_names_the_extra() -> None:
    if importlib.util.find_spec("cvxpy") is not None:
        pytest.skip("cvxpy is installed")
    with pytest.raises(MissingDependencyError, match=r"torchjd\[cagrad\]"):
        build_aggregator("cagrad", c=0.5)


def call_with(**changes) -> None:
    net = HandMade({"a": (1.0, 0.0), "b": (0.0, 1.0)})
    features = net.theta.reshape(1, 2) * 1.0
    arguments = {
        "task_losses": {t: (features * h).sum() for t, h in net.heads.items()},
        "features": features,
        "aggregator": build_aggregator("upgrad"),
        "shared_params": [net.theta],
        "head_params": net.heads,
    } | changes
    backward_tasks(**arguments)


def test_backward_tasks_checks_its_arguments() -> None:
    with pytest.raises(SpecError, match="level must be one of features, parameters"):
        call_with(level="trunk")
    with pytest.raises(SpecError, match="loss of task 'a' must be a scalar tensor"):
        call_with(task_losses={"a": torch.ones(2, requires_grad=True)})
    with pytest.raises(SpecError, match="present names tasks without a loss: z"):
        call_with(present={"z": False})
    with pytest.raises(SpecError, match="no task losses"):
        call_with(task_losses={})
    shared = torch.zeros(2, requires_grad=True)
    with pytest.raises(SpecError, match="both shared and task-specific"):
        call_with(shared_params=[shared], head_params=[shared])


# --- DDP ----------------------------------------------------------------------------------

DDP_SCRIPT = """
import json, sys
import torch, torch.distributed as dist, torch.multiprocessing as mp
from torch import nn
from dmtl.core.aggregation import backward_tasks, build_aggregator


def model_and_losses(rank, wrap):
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.Tanh())
    heads = nn.ModuleDict({"a": nn.Linear(8, 3), "b": nn.Linear(8, 2), "c": nn.Linear(8, 4)})
    generator = torch.Generator().manual_seed(1 + rank)  # a different batch per process
    x, y = torch.randn(10, 6, generator=generator), torch.randint(0, 2, (10,), generator=generator)
    trunk = nn.parallel.DistributedDataParallel(backbone) if wrap else backbone
    features = trunk(x)
    losses = {n: nn.functional.cross_entropy(h(features), y) for n, h in heads.items()}
    return trunk, backbone, heads, features, losses  # the DDP wrapper must outlive backward


def worker(rank, path, level, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="file://" + path, rank=rank, world_size=2)
    result = {"rank": rank}
    try:
        for key, wrap in (("synced", True), ("local", False)):
            _trunk, backbone, heads, features, losses = model_and_losses(rank, wrap)
            backward_tasks(losses, features, build_aggregator("upgrad"), backbone.parameters(),
                           heads, level=level)
            result[key] = [p.grad.tolist() for p in backbone.parameters()]
    except Exception as error:
        result["error"] = type(error).__name__ + ": " + str(error)
    dist.destroy_process_group()
    with open(out + str(rank), "w") as stream:
        json.dump(result, stream)


if __name__ == "__main__":
    folder = sys.argv[1]
    for level in ("features", "parameters"):
        out = folder + "/result-" + level + "-"
        mp.spawn(worker, args=(folder + "/store-" + level, level, out), nprocs=2)
"""


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """Two gloo processes on the CPU, each with its own batch, for each level: the
    processes' results as dicts (one script run, ``spawn``-started workers)."""
    folder = tmp_path_factory.mktemp("ddp")
    script = folder / "ddp_check.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    completed = subprocess.run(
        [sys.executable, str(script), str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return {
        level: [json.loads((folder / f"result-{level}-{rank}").read_text()) for rank in (0, 1)]
        for level in LEVELS
    }


@pytest.mark.slow
def test_ddp_averages_the_feature_level_aggregation(ddp_results: dict[str, list[dict]]) -> None:
    """DDP's reducer hooks see every trunk gradient (accumulated by one autograd backward),
    so both processes end with the mean of the two processes' own aggregations."""
    rank0, rank1 = ddp_results["features"]
    assert "error" not in rank0 and "error" not in rank1, (rank0, rank1)
    for s0, s1, l0, l1 in zip(
        rank0["synced"], rank1["synced"], rank0["local"], rank1["local"], strict=True
    ):
        assert s0 == s1
        mean = (torch.tensor(l0) + torch.tensor(l1)) / 2
        torch.testing.assert_close(torch.tensor(s0), mean, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_the_parameter_level_refuses_to_run_under_torch_distributed(
    ddp_results: dict[str, list[dict]],
) -> None:
    """TorchJD writes ``.grad`` directly at that level: DDP would not average it."""
    for result in ddp_results["parameters"]:
        assert result["error"].startswith("RunError: aggregation level 'parameters'")
