"""Input transforms: the augmentation presets, the evaluation crop, custom factories, the
removed keys, and the inputs a pretrained backbone asks for."""

from __future__ import annotations

import importlib.util
import math
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dmtl.build.data import build_experiment
from dmtl.build.transforms import resolve_inputs
from dmtl.config import ConfigError, validate_config
from dmtl.data.sources import ArraySource, decode_image
from dmtl.data.transforms import (
    CheckedTransform,
    eval_transform,
    train_transform,
)
from dmtl.errors import DataError, MissingDependencyError

needs_torchvision = pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is None, reason="needs the vision extra"
)


def _types(transform: Any) -> list[str]:
    return [type(t).__name__ for t in transform.transforms]


@needs_torchvision
def test_presets_are_the_documented_compositions() -> None:
    assert train_transform("none", (8, 8), 3) is None
    light = train_transform("light", (8, 6), 3, crop_scale=(0.3, 0.9))
    assert _types(light) == ["RandomResizedCrop", "RandomHorizontalFlip"]
    crop, flip = light.transforms  # type: ignore[union-attr]
    assert list(crop.size) == [8, 6] and tuple(crop.scale) == (0.3, 0.9)
    assert tuple(crop.ratio) == pytest.approx((3 / 4, 4 / 3)) and flip.p == 0.5
    standard = train_transform("standard", (8, 8), 3)
    assert _types(standard) == ["RandomResizedCrop", "RandomHorizontalFlip", "ColorJitter"]
    jitter = standard.transforms[2]  # type: ignore[union-attr]
    for factor in (jitter.brightness, jitter.contrast, jitter.saturation):
        assert tuple(factor) == pytest.approx((0.6, 1.4))
    assert jitter.hue is None
    rand = train_transform("randaugment", (8, 8), 3)
    assert _types(rand) == ["RandomResizedCrop", "RandomHorizontalFlip", "RandAugment"]
    assert (rand.transforms[2].num_ops, rand.transforms[2].magnitude) == (2, 9)  # type: ignore[union-attr]


@needs_torchvision
@pytest.mark.parametrize("preset", ["light", "standard", "randaugment"])
@pytest.mark.parametrize("channels", [1, 3])
def test_presets_give_the_model_size_in_range(preset: str, channels: int) -> None:
    transform = train_transform(preset, (12, 10), channels)
    assert transform is not None
    torch.manual_seed(0)
    for _ in range(10):
        out = transform(torch.rand(channels, 20, 16))
        assert out.shape == (channels, 12, 10) and out.dtype == torch.float32
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@needs_torchvision
def test_light_with_the_whole_area_flips_half_of_the_time() -> None:
    """scale (1, 1) on a square input keeps the whole image: the output is it or its mirror."""
    transform = train_transform("light", (6, 6), 1, crop_scale=(1.0, 1.0))
    assert transform is not None
    x = torch.rand(1, 6, 6)
    torch.manual_seed(0)
    flipped = 0
    for _ in range(400):
        out = transform(x)
        same = torch.allclose(out, x, atol=1e-6)
        assert same or torch.allclose(out, x.flip(-1), atol=1e-6)
        flipped += not same
    assert 150 < flipped < 250  # Binomial(400, 1/2): mean 200, sd 10


@needs_torchvision
def test_the_evaluation_crop_is_the_centre() -> None:
    x = torch.arange(2 * 7 * 9, dtype=torch.float32).reshape(2, 7, 9)
    crop = eval_transform((7, 9), (3, 5))
    assert crop is not None
    assert torch.equal(crop(x), x[:, 2:5, 2:7])
    with pytest.raises(DataError, match="smaller than the crop"):
        eval_transform((4, 4), (5, 5))


def test_without_torchvision_the_presets_say_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "torchvision.transforms", None)  # import fails
    with pytest.raises(MissingDependencyError, match=r"input.augment 'light' needs torchvision, "
                       r"which is not installed; pip install 'dmtl\[vision\]'"):
        train_transform("light", (8, 8), 3)
    with pytest.raises(MissingDependencyError, match="evaluation centre crop"):
        eval_transform((10, 10), (8, 8))
    assert train_transform("none", (8, 8), 3) is None  # no torchvision needed
    assert eval_transform((8, 8), (8, 8)) is None


def test_a_custom_factory_is_called_with_the_size_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_augment.py").write_text(
        textwrap.dedent(
            """
            import torch.nn.functional as F

            def resize(size, channels):
                return lambda x: F.interpolate(x[None], size=size)[0]

            def wrong(size, channels):
                return lambda x: x[:, :2, :2]

            def nothing(size, channels):
                return 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    transform = train_transform("my_augment:resize", (4, 5), 1)
    assert isinstance(transform, CheckedTransform)
    assert transform(torch.rand(1, 8, 8)).shape == (1, 4, 5)
    with pytest.raises(DataError, match=r"my_augment:wrong.*returned \(1, 2, 2\), expected .*"
                       r"\(1, 4, 5\)"):
        train_transform("my_augment:wrong", (4, 5), 1)(torch.rand(1, 8, 8))  # type: ignore[misc]
    with pytest.raises(ConfigError, match="expected a callable"):
        train_transform("my_augment:nothing", (4, 5), 1)
    with pytest.raises(ConfigError, match="has no callable 'missing'"):
        train_transform("my_augment:missing", (4, 5), 1)
    with pytest.raises(ConfigError, match="cannot import 'no_such_module'"):
        train_transform("no_such_module:f", (4, 5), 1)


def test_removed_augmentation_keys_get_one_line_saying_what_replaces_them(
    tiny_data: Any,
) -> None:
    data = tiny_data()
    data["sources"][0]["input"] = {"hflip": True, "crop_padding": 4}
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    message = str(info.value)
    assert "sources.0.input: crop_padding, hflip: removed; use 'augment: light'" in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize(
    ("input_section", "where", "match"),
    [
        ({"augment": "fancy"}, "sources.0.input.augment",
         "augment 'fancy': expected one of none, light"),
        ({"crop_scale": [0.9, 0.5]}, "sources.0.input", r"crop_scale \[0.9, 0.5\]"),
        ({"crop_pct": 0.9}, "sources.0.input.crop_pct", "needs input.image_size"),
        ({"crop_pct": 1.5}, "sources.0.input.crop_pct", "less than or equal to 1"),
    ],
)
def test_bad_input_settings_name_their_key(
    tiny_data: Any, input_section: dict[str, Any], where: str, match: str
) -> None:
    data = tiny_data()
    data["sources"][0]["input"] = input_section
    with pytest.raises(ConfigError, match=match) as info:
        validate_config(data)
    assert any(path == where for path, _ in info.value.problems)


def test_augmenting_vectors_is_refused(tiny_data: Any, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 3), np.float32))
    pd.DataFrame({"index": range(4), "digit": list("0101")}).to_csv(tmp_path / "m.csv", index=False)
    data = tiny_data(
        tasks=[{"name": "digit", "type": "categorical", "classes": ["0", "1"]}],
        relatedness=[],
    )
    data["sources"] = [{"name": "v", "manifest": str(tmp_path / "m.csv"),
                        "array": str(tmp_path / "x.npy"), "root": str(tmp_path),
                        "input": {"augment": "light"}}]
    with pytest.raises(DataError, match=r"sources.0.input.augment: augmentation needs image "
                       r"inputs \(C, H, W\); source 'v' has inputs of shape \(3,\)"):
        build_experiment(validate_config(data))


@pytest.fixture
def image_config(tmp_path: Path, tiny_data: Any) -> dict[str, Any]:
    """Ten 10x10 RGB PNGs (even rows train, odd rows test), decoded at 10 and cropped to 8."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(10):
        (tmp_path / "img").mkdir(exist_ok=True)
        pixels = rng.integers(0, 256, (10, 10, 3), np.uint8)
        Image.fromarray(pixels, mode="RGB").save(tmp_path / "img" / f"{i}.png")
        rows.append({"image": f"img/{i}.png", "split": "train" if i % 2 == 0 else "test",
                     "digit": str(i % 2)})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    data = tiny_data(
        tasks=[{"name": "digit", "type": "categorical", "classes": ["0", "1"]}],
        relatedness=[],
        backbone={"name": "small_cnn", "options": {"channels": [4], "feature_dim": 8}},
    )
    data["sources"] = [{
        "name": "faces", "manifest": str(tmp_path / "m.csv"), "root": str(tmp_path),
        "input": {"image_size": 8, "crop_pct": 0.8, "augment": "light",
                  "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    }]
    return data


@needs_torchvision
def test_images_are_decoded_at_size_over_crop_pct_and_centre_cropped_for_evaluation(
    image_config: dict[str, Any], tmp_path: Path
) -> None:
    experiment = build_experiment(validate_config(image_config))
    assert experiment.input_shape == (3, 8, 8)
    test = experiment.test[0]
    decoded = decode_image(tmp_path / "img" / "1.png", 3, (10, 10))  # floor(8 / 0.8) = 10
    expected = (decoded[:, 1:9, 1:9] - 0.5) / 0.25
    assert torch.allclose(test[0].x, expected)
    assert test.input_shape == (3, 8, 8) and test.input_shape_raw == (3, 10, 10)
    torch.manual_seed(0)
    train = experiment.train[0]
    assert train.augment is not None
    draws = {tuple(train[0].x.flatten()[:5].tolist()) for _ in range(5)}
    assert len(draws) > 1  # random crops and flips
    assert torch.allclose(train.with_augment(None)[0].x, train.with_augment(None)[0].x)


@needs_torchvision
def test_array_sources_take_the_presets_at_their_own_size(tiny_data: Any) -> None:
    data = tiny_data()
    data["sources"][0]["input"] = {"augment": "standard"}
    experiment = build_experiment(validate_config(data))
    assert experiment.input_shape == (1, 8, 8)
    assert experiment.train[0].augment is not None
    assert experiment.test[0].augment is None and experiment.test[0].eval_transform is None


def test_transforms_need_image_arrays(tasks: Any) -> None:
    with pytest.raises(DataError, match="transforms need image inputs"):
        ArraySource("v", tasks, np.zeros((2, 5), np.float32), {}).with_transforms(
            None, lambda x: x
        )


# ---- the inputs a pretrained backbone asks for --------------------------------------------------


def test_a_pretrained_timm_backbone_fills_what_the_config_leaves_unset(
    image_config: dict[str, Any], tiny_data: Any
) -> None:
    pytest.importorskip("timm")
    data = dict(image_config)
    data["backbone"] = {"name": "timm:resnet18", "pretrained": True}
    data["sources"] = [
        {**image_config["sources"][0], "input": {"augment": "light"}},
        {**image_config["sources"][0], "name": "given",
         "input": {"image_size": 112, "mean": [0.5], "std": [0.5], "channels": 1}},
        {**tiny_data()["sources"][0], "input": {}},
    ]
    resolved = resolve_inputs(validate_config(data))
    files, given, digits = (s.input for s in resolved.sources)
    # timm's resnet18 (a1_in1k): 224 px, crop_pct 0.95, ImageNet statistics, RGB
    assert (files.image_size, files.crop_pct, files.channels) == (224, 0.95, 3)
    assert files.mean == pytest.approx([0.485, 0.456, 0.406])
    assert files.std == pytest.approx([0.229, 0.224, 0.225])
    assert files.decode_size() == math.floor(224 / 0.95) == 235
    assert (given.image_size, given.channels, given.mean, given.std) == (112, 1, [0.5], [0.5])
    assert given.crop_pct == 0.95
    # a built-in array: statistics only (its size and channels are the data's)
    assert (digits.image_size, digits.crop_pct, digits.channels) == (None, None, None)
    assert digits.mean == pytest.approx([0.485, 0.456, 0.406])
    assert files.augment == "light"


def test_grey_images_get_the_mean_of_the_rgb_statistics(image_config: dict[str, Any]) -> None:
    pytest.importorskip("timm")
    data = dict(image_config)
    data["backbone"] = {"name": "timm:resnet18", "pretrained": True}
    data["sources"] = [{**image_config["sources"][0], "input": {"channels": 1}}]
    grey = resolve_inputs(validate_config(data)).sources[0].input
    assert grey.mean == pytest.approx([(0.485 + 0.456 + 0.406) / 3])
    assert grey.std == pytest.approx([(0.229 + 0.224 + 0.225) / 3])


def test_a_vit_size_option_is_its_input_size(image_config: dict[str, Any]) -> None:
    pytest.importorskip("timm")
    data = dict(image_config)
    data["backbone"] = {"name": "timm:vit_tiny_patch16_224", "pretrained": True,
                        "options": {"img_size": 112}}
    data["sources"] = [{**image_config["sources"][0], "input": {}}]
    vit = resolve_inputs(validate_config(data)).sources[0].input
    assert (vit.image_size, vit.crop_pct, vit.mean) == (112, 0.9, [0.5, 0.5, 0.5])


def test_without_pretrained_weights_nothing_is_filled(image_config: dict[str, Any]) -> None:
    data = dict(image_config)
    data["backbone"] = {"name": "timm:resnet18", "pretrained": False}
    config = validate_config(data)
    assert resolve_inputs(config) is config


def test_the_run_records_the_resolved_inputs(
    image_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The experiment's config (saved as config.yaml and in checkpoints) holds timm's values."""
    pytest.importorskip("timm")
    from dmtl import backbones

    data = dict(image_config)
    data["backbone"] = {"name": "timm:resnet18", "pretrained": True}
    data["sources"] = [{**image_config["sources"][0], "input": {"augment": "none"}}]
    small = backbones.BackboneDataConfig(mean=(0.4,) * 3, std=(0.2,) * 3, image_size=8,
                                         crop_pct=0.8)
    monkeypatch.setattr(backbones, "backbone_data_config", lambda *a, **k: small)
    experiment = build_experiment(validate_config(data))
    recorded = experiment.config.sources[0].input
    assert (recorded.image_size, recorded.crop_pct, recorded.mean) == (8, 0.8, [0.4] * 3)
    assert experiment.input_shape == (3, 8, 8)
    assert experiment.train[0].input_shape_raw == (3, 10, 10)


@needs_torchvision
@pytest.mark.slow
def test_prediction_prepares_images_as_evaluation_did(
    image_config: dict[str, Any], tmp_path: Path
) -> None:
    """The model card carries crop_pct: ``dmtl predict`` decodes at 10 and crops the centre 8."""
    from dmtl.inference.card import ModelCard
    from dmtl.inference.predict import input_source
    from dmtl.inference.runtime import load_predictor
    from dmtl.training.run import run_training

    experiment = build_experiment(validate_config(image_config))
    result = run_training(experiment, tmp_path / "run", quiet=True, progress_bar=False)
    predictor = load_predictor(result.checkpoint)  # type: ignore[arg-type]
    card = predictor.card
    assert (card.image_size, card.crop_pct, card.input_shape) == (8, 0.8, (3, 8, 8))
    assert ModelCard.from_json(card.to_json()).crop_pct == 0.8
    folder = input_source(card, tmp_path / "img")
    by_path = {Path(p).name: i for i, p in enumerate(folder.paths)}
    test = experiment.test[0]
    for row, path in enumerate(test.paths):
        assert torch.allclose(folder[by_path[Path(path).name]].x, test[row].x)


def test_a_checkpoint_of_an_older_version_still_loads(tiny_data: Any) -> None:
    """Checkpoints saved before input.augment hold crop_padding and hflip: they load, as the
    model does not need its training augmentation; a config file with them is refused."""
    from dmtl.build import ModelSpec

    data = tiny_data()
    data["sources"][0]["input"] = {"crop_padding": 4, "hflip": True, "mean": [0.5], "std": [1.0]}
    spec = ModelSpec(config=data, tasks=[], edges=[], input_shape=[1, 8, 8])
    loaded = spec.build_config().sources[0].input
    assert (loaded.augment, loaded.mean) == ("none", [0.5])
    with pytest.raises(ConfigError, match="removed"):
        validate_config(data)
