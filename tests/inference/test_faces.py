"""Faces in the wild: a real photo (scikit-image's astronaut, matplotlib's Grace Hopper) and a
video built from it (the face moved and scaled), through the offline detector, the crop
recipe, the tracker and ``dmtl predict``; no network."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import dmtl
from dmtl.cli import app
from dmtl.core.model import MultiTaskModel
from dmtl.core.tasks import BinarySetTask, CategoricalTask, RegressionTask
from dmtl.data.crops import CropRecipe
from dmtl.errors import ConfigError, DmtlError
from dmtl.inference.card import ModelCard
from dmtl.inference.detectors import create_detector, default_detector
from dmtl.inference.export import export_model
from dmtl.inference.faces import FACE_COLUMNS, NO_RECIPE_WARNING
from dmtl.inference.runtime import TorchPredictor
from dmtl.inference.tracking import iou

av = pytest.importorskip("av")
skimage_data = pytest.importorskip("skimage.data")

ASTRONAUT_FACE = (175.0, 70.0, 93.0, 93.0)
"""Where the astronaut's face is in ``skimage.data.astronaut()`` (x, y, w, h), by eye."""
FRAMES = 20
RECIPE = CropRecipe(
    kind="eye_aligned", size=(112, 112), left_eye=(0.342, 0.462), right_eye=(0.657, 0.46)
)


def face_model(crop: CropRecipe | None = RECIPE) -> tuple[MultiTaskModel, ModelCard]:
    """An untrained expression + AU + valence-arousal model on ``(3, 32, 32)`` face crops."""
    torch.manual_seed(0)
    tasks = (
        CategoricalTask("expression", ["neutral", "happiness", "sadness"]),
        BinarySetTask("au", ["AU1", "AU6", "AU12"]),
        RegressionTask("va", ["valence", "arousal"], low=-1.0, high=1.0),
    )
    backbone = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 8), nn.Tanh())
    model = MultiTaskModel(backbone, list(tasks), feature_dim=8).eval()
    card = ModelCard(
        name="faces", tasks=tasks, input_shape=(3, 32, 32), channels=3, image_size=32,
        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), crop=crop,
    )
    return model, card


def write_video(path: Path, photo: np.ndarray, codec: str = "mpeg4") -> list[tuple[float, ...]]:
    """``FRAMES`` frames of 640 x 480 at 10 fps: the photo scaled from 0.6 to 0.98 and moved
    right; returns the true face box of each frame."""
    boxes = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        for i in range(FRAMES):
            scale = 0.6 + 0.02 * i
            side = int(512 * scale)
            scaled = np.asarray(Image.fromarray(photo).resize((side, side)))
            canvas = np.full((480, 640, 3), 90, np.uint8)
            x0, y0 = 20 + 6 * i, 10
            h, w = min(side, 480 - y0), min(side, 640 - x0)
            canvas[y0 : y0 + h, x0 : x0 + w] = scaled[:h, :w]
            x, y, bw, bh = ASTRONAUT_FACE
            boxes.append((x0 + x * scale, y0 + y * scale, bw * scale, bh * scale))
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return boxes


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The model as a TorchScript file, the astronaut photo, and the video made from it."""
    folder = tmp_path_factory.mktemp("faces")
    model, card = face_model()
    export_model(model, card, folder / "faces.pt", "torchscript")
    photo = skimage_data.astronaut()
    Image.fromarray(photo).save(folder / "astronaut.png")
    boxes = write_video(folder / "moving.mp4", photo)
    return {"folder": folder, "model": folder / "faces.pt", "photo": folder / "astronaut.png",
            "video": folder / "moving.mp4", "boxes": boxes}


def test_the_offline_detector_finds_the_astronauts_face() -> None:
    faces = create_detector("auto").detect(skimage_data.astronaut())
    assert len(faces) == 1
    assert iou(faces[0].box, ASTRONAUT_FACE) > 0.5


def test_the_offline_detector_finds_grace_hopper() -> None:
    cbook = pytest.importorskip("matplotlib.cbook")
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as image:
        rgb = np.asarray(image.convert("RGB"))
    faces = create_detector().detect(rgb)
    assert len(faces) >= 1
    x, y, w, h = max(faces, key=lambda f: f.box[2] * f.box[3]).box
    # the face is in the upper middle of the portrait (512 x 600), about a third of its width
    assert 120 < x + w / 2 < 380 and 100 < y + h / 2 < 350 and 100 < w < 300


def test_a_photo_gives_one_named_row_per_face(media: dict[str, object]) -> None:
    frame = dmtl.Predictor(media["model"]).predict(media["photo"])
    assert len(frame) == 1
    row = frame.iloc[0]
    assert tuple(frame.columns[: len(FACE_COLUMNS)]) == FACE_COLUMNS
    assert row["frame"] == 0 and np.isnan(row["time"]) and row["face"] == 0
    assert iou((row["x"], row["y"], row["w"], row["h"]), ASTRONAUT_FACE) > 0.5
    assert row["expression"] in ("neutral", "happiness", "sadness")
    probs = [row[f"p:expression/{c}"] for c in ("neutral", "happiness", "sadness")]
    assert sum(probs) == pytest.approx(1.0, abs=1e-5)
    assert {row["au/AU1"], row["au/AU6"], row["au/AU12"]} <= {0.0, 1.0}
    assert -1.0 <= row["va/valence"] <= 1.0


def test_the_model_sees_the_crop_the_recipe_makes(media: dict[str, object]) -> None:
    """The pipeline's input for the face equals the recipe's crop, normalised by hand."""
    from dmtl.data.crops import crop_face

    model, card = face_model()
    predictor = dmtl.Predictor(TorchPredictor(model, card))
    photo = skimage_data.astronaut()
    face = predictor.detector.detect(photo)[0]  # type: ignore[union-attr]
    crop = np.array(crop_face(Image.fromarray(photo), face.box, RECIPE, None, (32, 32)))
    expected = (torch.from_numpy(crop).permute(2, 0, 1).float() / 255 - 0.5) / 0.25
    got = predictor._normalised(crop[None])
    torch.testing.assert_close(got[0], expected)
    table = predictor.predict(media["photo"])
    with torch.no_grad():
        want = torch.softmax(model(expected[None])["expression"], -1)[0]
    assert table.iloc[0]["p:expression/happiness"] == pytest.approx(float(want[1]), abs=1e-5)


def run_cli(*args: object, code: int = 0) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, f"{result.output}\n{result.exception!r}"
    return result.output


@pytest.mark.slow
def test_predict_a_photo_and_a_video_keeps_one_track(
    media: dict[str, object], tmp_path: Path
) -> None:
    out = tmp_path / "faces.parquet"
    run_cli("predict", media["model"], media["photo"], media["video"], "-o", out, "--faces",
            "--max-faces", "1", "--plots", tmp_path / "plots", "--annotate", tmp_path / "ann")
    frame = pd.read_parquet(out)
    video = frame[frame["file"] == str(media["video"])]
    assert len(video) >= 0.8 * FRAMES  # the cascade may miss a frame or two
    assert video["face"].nunique() == 1  # one face, one track
    assert np.allclose(video["time"].to_numpy(), video["frame"].to_numpy() / 10)
    boxes = media["boxes"]
    overlaps = [iou(tuple(r[["x", "y", "w", "h"]]), boxes[int(r["frame"])])  # type: ignore[index]
                for _, r in video.iterrows()]
    assert np.median(overlaps) > 0.5
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {
        "astronaut_face0.png", "moving_face0.png"}
    assert {p.name for p in (tmp_path / "ann").iterdir()} == {
        "astronaut_annotated.png", "moving_annotated.mp4"}
    with av.open(str(tmp_path / "ann" / "moving_annotated.mp4")) as annotated:
        assert sum(1 for _ in annotated.decode(video=0)) == FRAMES
    # pictures are not replaced unasked
    output = run_cli("predict", media["model"], media["photo"], "-o", tmp_path / "b.csv",
                     "--plots", tmp_path / "plots", code=2)
    assert "exists; pass --overwrite" in output


def test_every_and_smoothing(media: dict[str, object]) -> None:
    plain = dmtl.Predictor(media["model"], every=4, max_faces=1).predict(media["video"])
    assert set(plain["frame"]) <= set(range(0, FRAMES, 4))
    smooth = dmtl.Predictor(media["model"], every=4, max_faces=1, smooth=0.5)
    smoothed = smooth.predict(media["video"])
    column = "p:expression/happiness"
    a, s = plain[column].to_numpy(), smoothed[column].to_numpy()
    assert s[0] == pytest.approx(a[0])
    assert s[1] == pytest.approx(0.5 * a[1] + 0.5 * a[0], abs=1e-6)
    assert smooth.frames == len(range(0, FRAMES, 4))
    assert set(smooth.timings) == {"decode", "detect", "track", "crop", "model"}


def test_an_avi_and_a_folder(media: dict[str, object], tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    write_video(folder / "clip.avi", skimage_data.astronaut())
    frame = dmtl.Predictor(media["model"], every=5, max_faces=1).predict(folder)
    assert set(frame["file"]) == {str(folder / "clip.avi")} and len(frame) >= 3


def test_a_model_without_a_recipe_warns_when_asked_for_faces() -> None:
    model, card = face_model(crop=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor = dmtl.Predictor(TorchPredictor(model, card), faces=True)
    assert any(str(w.message) == NO_RECIPE_WARNING for w in caught)
    assert predictor.faces
    assert not dmtl.Predictor(TorchPredictor(model, card)).faces  # off by default


def test_without_faces_each_frame_is_one_input(media: dict[str, object]) -> None:
    frame = dmtl.Predictor(media["model"], faces=False).predict(media["photo"])
    assert len(frame) == 1
    assert tuple(frame.iloc[0][["x", "y", "w", "h"]]) == (0, 0, 512, 512)


def test_bad_inputs_are_one_line(media: dict[str, object], tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(DmtlError, match=r"broken\.mp4: cannot"):
        dmtl.Predictor(media["model"]).predict(broken)
    with pytest.raises(DmtlError, match="no such file"):
        dmtl.Predictor(media["model"]).predict(tmp_path / "missing.jpg")
    with pytest.raises(ConfigError, match="--every"):
        dmtl.Predictor(media["model"], every=0)
    with pytest.raises(ConfigError, match="unknown face detector 'nope'"):
        dmtl.Predictor(media["model"], detector="nope")
    with pytest.raises(ConfigError, match="scale_factor"):
        dmtl.Predictor(media["model"], detector="lbp", detector_options={"scale_factor": 0.5})
    output = run_cli("predict", media["model"], tmp_path / "notes.txt", "-o",
                     tmp_path / "x.csv", code=2)
    assert "no such file" in output


def test_the_default_detector_is_offline() -> None:
    assert default_detector() in ("haar", "lbp")


def test_card_records_the_crop_and_old_cards_load() -> None:
    _, card = face_model()
    again = ModelCard.from_json(card.to_json())
    assert again.crop == RECIPE
    old = card.to_dict()
    del old["input"]["crop"]  # a card written before dmtl recorded crops
    assert ModelCard.from_json(json.dumps(old)).crop is None
