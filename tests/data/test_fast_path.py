"""The fast data path: whole batches by tensor indexing, the in-memory image cache and JPEG
decoding through torchvision give exactly what the per-sample path gives."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dmtl.build.data import load_sources
from dmtl.config import validate_config
from dmtl.core.tasks import BinarySetTask, CategoricalTask, Task
from dmtl.data.batching import SourceConcat, build_eval_loader, build_train_loader, collate_samples
from dmtl.data.sources import (
    ArraySource,
    ImageSource,
    SampleBatch,
    Source,
    _jpeg_decoder,
    decode_image,
)
from dmtl.data.transforms import eval_transform, train_transform
from dmtl.errors import DataError

from .conftest import WritePngs, pixels


def _tasks() -> list[Task]:
    return [CategoricalTask("digit", ["a", "b", "c"]), BinarySetTask("attr", ["even", "big"])]


def _array_source(
    name: str, n: int, dtype: type = np.uint8, channels: int = 2, **kwargs: object
) -> ArraySource:
    rng = np.random.default_rng(n)
    array = rng.integers(0, 256, (n, channels, 5, 5)).astype(dtype)
    attr = rng.integers(0, 2, (n, 2)).astype(np.float32)
    attr[rng.random((n, 2)) < 0.3] = np.nan
    labels = {"digit": np.where(rng.random(n) < 0.2, -1, rng.integers(0, 3, n)), "attr": attr}
    return ArraySource(name, _tasks(), array, labels, **kwargs)  # type: ignore[arg-type]


def _same_batch(a: SampleBatch, samples: list, source: Source) -> None:
    assert torch.equal(a.x, torch.stack([s.x for s in samples]))
    for name, values in a.labels.items():
        expected = torch.stack([s.labels[name] for s in samples])
        assert torch.equal(values, expected) or torch.allclose(values, expected, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_get_batch_equals_the_samples_one_by_one(dtype: type) -> None:
    source = _array_source("s", 12, dtype, mean=[0.2, 0.4], std=[0.5, 2.0])
    rows = [3, 0, 11, 3, -1]
    batch = source.get_batch(rows)
    assert batch.x.dtype == torch.float32 and batch.x.shape == (5, 2, 5, 5)
    _same_batch(batch, [source[i] for i in rows], source)
    with pytest.raises(IndexError):
        source.get_batch([12])


@pytest.mark.parametrize("preset", ["light", "standard"])
def test_augmented_batches_draw_the_same_random_numbers_as_single_samples(preset: str) -> None:
    # colour jitter (in "standard") takes 1 or 3 channels
    source = _array_source("s", 8, np.float32, 3, augment=train_transform(preset, (4, 4), 3))
    torch.manual_seed(5)
    batch = source.get_batch(range(8))
    torch.manual_seed(5)
    one_by_one = [source[i] for i in range(8)]
    _same_batch(batch, one_by_one, source)
    assert batch.x.shape == (8, 3, 4, 4)


def test_batches_with_an_evaluation_crop_equal_single_samples() -> None:
    source = _array_source("s", 6, eval_transform=eval_transform((5, 5), (3, 3)))
    _same_batch(source.get_batch(range(6)), [source[i] for i in range(6)], source)
    assert source.get_batch([0]).x.shape == (1, 2, 3, 3)


def test_label_tensors_follow_every_change_of_the_labels() -> None:
    source = _array_source("s", 6)
    first = source.label_tensors
    assert source.label_tensors is first  # made once
    assert torch.equal(first["digit"], torch.from_numpy(source.labels["digit"]))
    hidden = source.with_labels({"digit": np.full(6, -1)}, checked=True)
    assert hidden.label_tensors["digit"].tolist() == [-1] * 6
    assert source.label_tensors["digit"].tolist() == source.labels["digit"].tolist()
    part = source.subset([4, 1])
    expected = source.labels["digit"][[4, 1]].tolist()
    assert part.get_batch([0, 1]).labels["digit"].tolist() == expected
    part.labels = {**part.labels, "digit": np.array([2, 2])}
    assert part[0].labels["digit"].item() == 2


def test_loader_batches_equal_per_sample_collation() -> None:
    sources = [_array_source("big", 30), _array_source("small", 7, np.float32)]
    loader = build_train_loader(sources, 8, [3, 1], seed=4, rank=0, world_size=1)
    concat = SourceConcat(sources)
    collate = collate_samples(_tasks())
    for indices, batch in zip(loader.batch_sampler, loader, strict=True):  # type: ignore[arg-type]
        chunks = concat.__getitems__(indices)
        assert [c.source for c in chunks] == [0, 1]  # one chunk per run of a source's rows
        reference = collate([concat[i] for i in indices])
        assert torch.equal(batch.x, reference.x)
        assert torch.equal(batch.source, reference.source)
        for name in ("digit", "attr"):
            assert torch.equal(batch.labels[name].target, reference.labels[name].target)
            assert torch.equal(batch.labels[name].mask, reference.labels[name].mask)


def test_indices_interleaving_sources_keep_their_order() -> None:
    sources = [_array_source("a", 5), _array_source("b", 4)]
    concat = SourceConcat(sources)
    indices = [6, 0, 1, 8, 2]
    chunks = concat.__getitems__(indices)
    assert [(c.source, len(c.x)) for c in chunks] == [(1, 1), (0, 2), (1, 1), (0, 1)]
    batch = collate_samples(_tasks())(chunks)
    assert batch.source.tolist() == [1, 0, 0, 1, 0]
    assert torch.equal(batch.x, torch.stack([concat[i].x for i in indices]))


def test_a_task_a_source_lacks_is_unlabelled_in_the_batch() -> None:
    only_digit = ArraySource("d", [_tasks()[0]], np.zeros((3, 2), np.float32),
                             {"digit": np.array([0, 1, 2])})
    loader = build_eval_loader([only_digit], 3, tasks=_tasks())
    (batch,) = list(loader)
    assert batch.labels["digit"].mask.all() and not batch.labels["attr"].mask.any()


def test_moving_a_batch_where_it_already_is_copies_nothing() -> None:
    concat = SourceConcat([_array_source("a", 4)])
    batch = collate_samples(_tasks())(concat.__getitems__([0, 1]))
    moved = batch.to(torch.device("cpu"), non_blocking=True)  # what Lightning does each step
    assert moved.x is batch.x and moved.labels is batch.labels and moved.source is batch.source
    doubled = batch.to(torch.float64)
    assert doubled.x.dtype == torch.float64 and doubled.labels is batch.labels


# ---- the in-memory cache ------------------------------------------------------------------------


def test_cached_images_equal_decoded_images_and_are_shared(
    write_pngs: WritePngs, tasks: list[Task]
) -> None:
    path = write_pngs(6, channels=3)
    source = Source.from_manifest("s", path, None, tasks, image_size=(4, 6))
    assert isinstance(source, ImageSource) and not source.cached
    cached = source.cache_in_memory(2**20)
    assert cached.cached and not source.cached
    assert cached.cache_bytes == 6 * 3 * 4 * 6  # uint8 pixels
    for i in range(6):
        assert torch.equal(cached.raw_input(i), source.raw_input(i))
    assert torch.equal(cached.get_batch([5, 2]).x, source.get_batch([5, 2]).x)
    part = cached.subset([4, 1, 2])
    assert part.cached and part._cache is cached._cache  # subsets share the decoded pixels
    assert torch.equal(part.raw_inputs(np.array([0, 2])), source.raw_inputs(np.array([4, 2])))
    expected = source.get_batch([4, 1, 2]).x
    for file in source.paths:
        Path(file).unlink()
    assert torch.equal(part.get_batch([0, 1, 2]).x, expected)  # no file is read any more
    with pytest.raises(DataError, match="image file not found"):
        source.raw_input(0)


def test_cache_is_refused_above_the_limit_with_its_size(
    write_pngs: WritePngs, tasks: list[Task]
) -> None:
    source = Source.from_manifest("s", write_pngs(10), None, tasks)
    with pytest.raises(DataError) as error:
        source.cache_in_memory(100, "sources.0.input.cache")
    message = str(error.value)
    assert message.startswith("sources.0.input.cache: caching 10 images of 1x8x8 takes")
    assert "above the limit" in message and "input.cache_max_gb" in message


def test_cache_needs_one_image_size(tmp_path: Path, tasks: list[Task]) -> None:
    for i, size in enumerate([(8, 8), (8, 6)]):
        Image.fromarray(pixels(1, 1, size)[0, 0]).save(tmp_path / f"{i}.png")
    frame = pd.DataFrame({"image": ["0.png", "1.png"], "digit": ["one", "two"]})
    source = Source.from_manifest("s", frame, tmp_path, tasks)
    with pytest.raises(DataError, match=r"1\.png is \(1, 8, 6\).*give input\.image_size"):
        source.cache_in_memory(2**20)
    resized = Source.from_manifest("s", frame, tmp_path, tasks, image_size=8)
    assert resized.cache_in_memory(2**20).raw_inputs(np.arange(2)).shape == (2, 1, 8, 8)


def test_a_16_bit_image_makes_the_cache_float(tmp_path: Path, tasks: list[Task]) -> None:
    Image.fromarray(pixels(1, 1, (4, 4))[0, 0]).save(tmp_path / "a.png")
    wide = np.full((4, 4), 65535 // 3, dtype=np.uint16)
    Image.fromarray(wide).save(tmp_path / "b.png")
    frame = pd.DataFrame({"image": ["a.png", "b.png"], "digit": ["one", "two"]})
    source = Source.from_manifest("s", frame, tmp_path, tasks, channels=1)
    cached = source.cache_in_memory(2**20)
    assert cached._cache is not None and cached._cache.dtype == np.float32
    for i in range(2):
        assert torch.equal(cached.raw_input(i), source.raw_input(i))


def test_memory_mapped_array_is_read_into_memory(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.float32).reshape(6, 4)
    np.save(tmp_path / "x.npy", array)
    source = ArraySource("a", _tasks(), tmp_path / "x.npy", {})
    assert not source.cached and isinstance(source.array, np.memmap)
    cached = source.cache_in_memory(2**20)
    assert cached.cached and cached.cache_bytes == array.nbytes
    assert not isinstance(cached.array, np.memmap)
    assert torch.equal(cached.get_batch([1, 5]).x, source.get_batch([1, 5]).x)
    with pytest.raises(DataError, match="above the limit"):
        source.cache_in_memory(10)


def test_input_cache_in_the_config_caches_the_source(write_pngs: WritePngs) -> None:
    manifest = write_pngs(4)
    config = validate_config({
        "tasks": [{"name": "digit", "type": "categorical", "classes": ["zero", "one", "two"]},
                  {"name": "attr", "type": "binary_set", "labels": ["even", "big"]}],
        "sources": [{"name": "s", "manifest": str(manifest),
                     "input": {"cache": "memory", "cache_max_gb": 0.001}}],
    })
    (loaded,) = load_sources(config)
    assert loaded.source.cached and loaded.source.cache_bytes == 4 * 8 * 8
    tiny = config.model_copy(deep=True)
    tiny.sources[0].input.cache_max_gb = 1e-9
    with pytest.raises(DataError, match=r"^sources\.0\.input\.cache: caching 4 images"):
        load_sources(tiny)


# ---- JPEG decoding ------------------------------------------------------------------------------


def _photo(size: tuple[int, int], mode: str) -> Image.Image:
    """A smooth RGB image with detail (JPEG-like content), converted to ``mode``."""
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    rgb = np.stack([(xx * 7 + yy * 3) % 256, (yy * 5) % 256, ((xx - yy) * 11) % 256], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8)).convert(mode)


def _pillow(path: Path, channels: int, size: tuple[int, int] | None) -> torch.Tensor:
    """What the Pillow path gives (the reference)."""
    with Image.open(path) as file:
        img = file.convert("L" if channels == 1 else "RGB")
        if size is not None and img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        array = np.array(img, dtype=np.uint8)
    x = torch.from_numpy(array)
    return (x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)).float() / 255


@pytest.mark.parametrize(("mode", "channels"), [("RGB", 3), ("L", 1), ("L", 3), ("RGB", 1)])
@pytest.mark.parametrize("size", [None, (20, 30), (90, 50)])
def test_jpeg_decoding_gives_the_pixels_pillow_gives(
    tmp_path: Path, mode: str, channels: int, size: tuple[int, int] | None
) -> None:
    path = tmp_path / "photo.jpg"
    _photo((61, 47), mode).save(path, quality=85)
    decoded, reference = decode_image(path, channels, size), _pillow(path, channels, size)
    if size is None:  # the same decoder (libjpeg-turbo): the same pixels
        assert torch.equal(decoded, reference)
    else:  # torchvision's antialiased bilinear resize follows Pillow's to the rounding
        assert decoded.shape == reference.shape
        assert float((decoded - reference).abs().max()) <= 1 / 255 + 1e-7


@pytest.mark.skipif(_jpeg_decoder() is None, reason="needs torchvision")
def test_jpegs_go_through_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "photo.JPEG"
    _photo((16, 16), "RGB").save(path)
    calls: list[str] = []
    decode, read, resize = _jpeg_decoder()
    monkeypatch.setattr("dmtl.data.sources._jpeg_decoder",
                        lambda: (decode, lambda p: calls.append(p) or read(p), resize))
    decode_image(path, 3, None)
    assert calls == [str(path)]


def test_a_truncated_jpeg_is_one_clear_error(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    _photo((64, 64), "RGB").save(buffer, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[:300])
    with pytest.raises(DataError, match=r"cut\.jpg: cannot decode the image"):
        decode_image(path, 3, None)
