"""docs/export.md: its Python runs the ONNX file without dmtl and gives dmtl's numbers."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from dmtl.core.model import MultiTaskModel
from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import CategoricalTask
from dmtl.inference.card import ModelCard, model_card
from dmtl.inference.export import export_model
from dmtl.inference.predict import input_source, zero_shot_columns
from dmtl.inference.runtime import OnnxPredictor, TorchPredictor
from dmtl.training.module import load_module

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

DOC = Path(__file__).parents[2] / "docs" / "export.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_examples_do_not_use_dmtl() -> None:
    blocks = _python_blocks()
    assert len(blocks) == 3
    assert not any(re.search(r"^\s*(import|from) dmtl", b, flags=re.M) for b in blocks)


@pytest.mark.slow
@pytest.mark.parametrize("crop_pct", [1.0, 0.7])
def test_the_standalone_example_matches_dmtl_predict(
    trained_run: Path, tmp_path: Path, crop_pct: float
) -> None:
    """Also with a centre crop: 8x8 inputs decoded at floor(8 / 0.7) = 11, centre kept."""
    from dataclasses import replace

    from PIL import Image

    module = load_module(trained_run / "checkpoints" / "last.ckpt")
    card = replace(model_card(module), crop_pct=crop_pct)
    path = export_model(module.model, card, tmp_path / "model.onnx").path
    rng = np.random.default_rng(0)
    images = []
    for i in range(3):
        images.append(tmp_path / f"face{i}.png")
        Image.fromarray(rng.integers(0, 256, (13, 9), dtype=np.uint8)).save(images[-1])
    code = _python_blocks()[0]
    code = code.replace('"runs/my/model.onnx"', repr(str(path)))
    code = code.replace('["face1.png", "face2.png"]', repr([str(p) for p in images]))
    namespace: dict[str, object] = {"print": lambda *args: None}
    exec(compile(code, str(DOC), "exec"), namespace)
    outputs = namespace["outputs"]
    assert isinstance(outputs, dict)

    predictor = OnnxPredictor(path)
    source = input_source(predictor.card, tmp_path)  # the folder of PNGs, as dmtl reads it
    x = torch.stack([source[i].x for i in range(len(source))])
    want = predictor.probabilities(x)
    for name, value in want.items():
        np.testing.assert_allclose(outputs[name], value.numpy(), atol=1e-5, rtol=0)


def _run_zero_shot_example(card: ModelCard, outputs: dict[str, np.ndarray]) -> np.ndarray:
    namespace: dict[str, object] = {"np": np, "card": card.to_dict(), "outputs": outputs}
    exec(compile(_python_blocks()[1], str(DOC), "exec"), namespace)
    scores = namespace["scores"]
    assert isinstance(scores, dict) and list(scores) == [card.edges[0].source.name]
    return np.asarray(scores[card.edges[0].source.name])


def _dmtl_zero_shot(card: ModelCard, outputs: dict[str, np.ndarray]) -> np.ndarray:
    edge = card.edges[0]
    columns = zero_shot_columns(edge, {k: torch.from_numpy(v) for k, v in outputs.items()})
    return np.stack([columns[f"zs:{edge.source.name}/{c}"] for c in edge.source.names], axis=1)


def test_the_zero_shot_example_matches_dmtl_for_a_binary_set(
    zero_shot_model: tuple[MultiTaskModel, ModelCard],
) -> None:
    model, card = zero_shot_model
    x = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    outputs = {k: v.numpy() for k, v in TorchPredictor(model, card).probabilities(x).items()}
    want = _dmtl_zero_shot(card, outputs)
    np.testing.assert_allclose(_run_zero_shot_example(card, outputs), want, atol=1e-5, rtol=0)


def test_the_zero_shot_example_matches_dmtl_for_a_categorical_target() -> None:
    fine = CategoricalTask("fine", ["cat", "dog", "wolf", "catdog"], zero_shot=["catdog"])
    coarse = CategoricalTask("coarse", ["feline", "canine", "bird"])
    # no fine class leads to "bird": its column is all zero (dmtl falls back on the prior)
    table = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0]]
    card = ModelCard(
        name="c", tasks=(fine, coarse), input_shape=(2,),
        edges=(Relatedness(fine, coarse, table),),
    )  # fmt: skip
    p = np.random.default_rng(2).dirichlet(np.ones(3), size=5).astype(np.float32)
    outputs = {"coarse": p, "fine": np.full((5, 4), 0.25, np.float32)}
    want = _dmtl_zero_shot(card, outputs)
    np.testing.assert_allclose(_run_zero_shot_example(card, outputs), want, atol=1e-5, rtol=0)
