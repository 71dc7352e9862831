"""Exported ONNX and TorchScript files: the same probabilities as PyTorch for any batch size,
the card inside, files never overwritten unasked, zero-shot scores from the file's tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dmtl.core.model import MultiTaskModel, predictions
from dmtl.errors import ConfigError, OutputError, RunError, SpecError
from dmtl.inference import export as export_module
from dmtl.inference.card import ModelCard, model_card
from dmtl.inference.export import DEFAULT_OPSET, export_model
from dmtl.inference.predict import prediction_frame
from dmtl.inference.runtime import (
    OnnxPredictor,
    TorchPredictor,
    TorchScriptPredictor,
    load_predictor,
)
from dmtl.training.module import MultiTaskModule, load_module

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def module(trained_run: Path) -> MultiTaskModule:
    return load_module(trained_run / "checkpoints" / "last.ckpt")


@pytest.fixture(scope="module")
def exported(
    module: MultiTaskModule, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The trained model exported once to each format."""
    folder = tmp_path_factory.mktemp("exported")
    card = model_card(module)
    return {
        fmt: export_model(module.model, card, folder / f"model{suffix}", fmt).path  # type: ignore[arg-type]
        for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".pt"))
    }


def _expected(model: MultiTaskModel, card: ModelCard, x: torch.Tensor) -> dict[str, np.ndarray]:
    with torch.no_grad():
        probs = predictions(model.eval()(x), card.tasks)
    return {name: p.numpy() for name, p in probs.items()}


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_outputs_match_pytorch_for_any_batch_size(
    module: MultiTaskModule, exported: dict[str, Path], batch: int
) -> None:
    card = model_card(module)
    x = torch.randn((batch, *card.input_shape), generator=torch.Generator().manual_seed(batch))
    session = ort.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])
    names = [t.name for t in card.tasks]
    assert [o.name for o in session.get_outputs()] == names
    got = session.run(names, {"input": x.numpy()})
    want = _expected(module.model, card, x)
    for name, value in zip(names, got, strict=True):
        assert value.shape == want[name].shape == (batch, card.task(name).num_outputs)
        np.testing.assert_allclose(value, want[name], atol=TOLERANCE, rtol=0)
    # probabilities, not logits: each categorical row sums to one
    np.testing.assert_allclose(got[0].sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 5])
def test_torchscript_outputs_match_pytorch_for_any_batch_size(
    module: MultiTaskModule, exported: dict[str, Path], batch: int
) -> None:
    from dmtl.inference.runtime import quiet_torchscript

    card = model_card(module)
    x = torch.randn((batch, *card.input_shape), generator=torch.Generator().manual_seed(batch))
    with quiet_torchscript():
        scripted = torch.jit.load(str(exported["torchscript"]))
    with torch.no_grad():
        got = scripted(x)
    want = _expected(module.model, card, x)
    assert list(got) == [t.name for t in card.tasks]
    for name, value in got.items():
        np.testing.assert_allclose(value.numpy(), want[name], atol=TOLERANCE, rtol=0)


def test_the_onnx_file_has_a_dynamic_batch_axis_and_the_default_opset(
    exported: dict[str, Path],
) -> None:
    proto = onnx.load(str(exported["onnx"]))
    onnx.checker.check_model(proto)
    (graph_input,) = proto.graph.input
    first = graph_input.type.tensor_type.shape.dim[0]
    assert first.dim_param == "batch" and not first.HasField("dim_value")
    assert [d.dim_value for d in graph_input.type.tensor_type.shape.dim[1:]] == [1, 8, 8]
    assert {o.domain: o.version for o in proto.opset_import}[""] == DEFAULT_OPSET == 18


def test_the_card_round_trips_through_both_files(
    module: MultiTaskModule, exported: dict[str, Path]
) -> None:
    card = model_card(module).to_dict()
    proto = onnx.load(str(exported["onnx"]))
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["dmtl"]) == card
    extra = {"dmtl.json": ""}
    from dmtl.inference.runtime import quiet_torchscript

    with quiet_torchscript():
        torch.jit.load(str(exported["torchscript"]), _extra_files=extra)
    assert json.loads(extra["dmtl.json"]) == card
    for path in exported.values():
        predictor = load_predictor(path)
        assert predictor.card.to_dict() == card


def test_predictors_are_chosen_by_file(exported: dict[str, Path], trained_run: Path) -> None:
    assert isinstance(load_predictor(exported["onnx"]), OnnxPredictor)
    assert isinstance(load_predictor(exported["torchscript"]), TorchScriptPredictor)
    assert isinstance(load_predictor(trained_run / "checkpoints" / "last.ckpt"), TorchPredictor)


def test_an_existing_file_is_kept_unless_overwrite(
    module: MultiTaskModule, tmp_path: Path
) -> None:
    target = tmp_path / "model.pt"
    target.write_bytes(b"precious")
    card = model_card(module)
    with pytest.raises(OutputError, match="exists; pass --overwrite"):
        export_model(module.model, card, target, "torchscript")
    assert target.read_bytes() == b"precious"
    export_model(module.model, card, target, "torchscript", overwrite=True)
    assert isinstance(load_predictor(target), TorchScriptPredictor)


def test_a_failed_check_leaves_the_old_file_and_no_partial_one(
    module: MultiTaskModule, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def differs(*args: object) -> float:
        raise RunError("the exported torchscript model differs from PyTorch")

    monkeypatch.setattr(export_module, "check_export", differs)
    target = tmp_path / "model.pt"
    target.write_bytes(b"precious")
    with pytest.raises(RunError, match="differs"):
        export_model(module.model, model_card(module), target, "torchscript", overwrite=True)
    assert target.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_the_torchscript_based_exporter_writes_the_onnx_file(
    module: MultiTaskModule, tmp_path: Path
) -> None:
    result = export_model(module.model, model_card(module), tmp_path / "m.onnx", "onnx")
    assert result.exporter == "torchscript" and result.max_difference <= TOLERANCE


def test_where_it_fails_the_torch_export_based_one_writes_the_same_model(
    module: MultiTaskModule, exported: dict[str, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fallback (an operator the TorchScript-based exporter lacks, a PyTorch without
    it): the same probabilities, the same card, checked against PyTorch all the same."""

    def fails(*args: object) -> None:
        raise RuntimeError("no such exporter")

    monkeypatch.setattr(export_module, "_write_onnx_torchscript", fails)
    card = model_card(module)
    result = export_model(module.model, card, tmp_path / "m.onnx", "onnx")
    assert result.exporter == "dynamo" and result.max_difference <= TOLERANCE
    proto = onnx.load(str(result.path))
    assert json.loads({p.key: p.value for p in proto.metadata_props}["dmtl"]) == card.to_dict()
    x = torch.randn((4, *card.input_shape), generator=torch.Generator().manual_seed(4))
    names = [t.name for t in card.tasks]
    got = [ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        names, {"input": x.numpy()}) for path in (result.path, exported["onnx"])]
    for dynamo_output, torchscript_output in zip(*got, strict=True):
        np.testing.assert_allclose(dynamo_output, torchscript_output, atol=1e-6, rtol=0)


def test_when_both_exporters_fail_the_error_names_both(
    module: MultiTaskModule, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(*args: object) -> None:
        raise RuntimeError("an operator it lacks")

    def also_fails(*args: object) -> None:
        raise RunError("ONNX export failed (X: y); try --format torchscript")

    monkeypatch.setattr(export_module, "_write_onnx_torchscript", fails)
    monkeypatch.setattr(export_module, "_write_onnx_dynamo", also_fails)
    with pytest.raises(RunError, match=r"try --format torchscript \(the TorchScript-based "
                       r"exporter: RuntimeError: an operator it lacks\)"):
        export_model(module.model, model_card(module), tmp_path / "m.onnx", "onnx")
    assert list(tmp_path.iterdir()) == []


def test_opsets_below_18_are_refused(module: MultiTaskModule, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--opset: must lie in \[18, "):
        export_model(module.model, model_card(module), tmp_path / "m.onnx", "onnx", opset=13)
    assert not list(tmp_path.iterdir())


def test_an_onnx_file_without_a_card_is_refused(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
    )
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(SpecError, match=r"plain.onnx: no dmtl metadata .*'dmtl export'"):
        load_predictor(path)
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(SpecError, match=r"broken\.onnx: cannot load the ONNX model"):
        load_predictor(tmp_path / "broken.onnx")


def test_zero_shot_scores_come_from_the_tables_in_the_file(
    zero_shot_model: tuple[MultiTaskModel, ModelCard], tmp_path: Path
) -> None:
    model, card = zero_shot_model
    path = export_model(model, card, tmp_path / "zs.onnx").path
    from_file = OnnxPredictor(path)
    assert torch.equal(from_file.card.edges[0].table, card.edges[0].table)
    assert from_file.card.thresholds == {"au": (0.5, 0.3, 0.7)}
    x = torch.randn(7, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    ids = [f"s{i}" for i in range(7)]
    want = prediction_frame(card, TorchPredictor(model, card).probabilities(x), ids)
    got = prediction_frame(from_file.card, from_file.probabilities(x), ids)
    assert list(got.columns) == list(want.columns)
    zero_shot = [c for c in want.columns if c.startswith("zs:expression/")]
    assert len(zero_shot) == 4 and "zs:expression" in want.columns
    numeric = [c for c in want.columns if c.startswith(("p:", "zs:expression/"))]
    np.testing.assert_allclose(got[numeric], want[numeric], atol=TOLERANCE, rtol=0)
    exact = [c for c in want.columns if c not in numeric]
    assert got[exact].equals(want[exact])
