"""Sources: image and array readers, file checks, corrupt images, copies, augmentation."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dmtl.core.tasks import Task
from dmtl.data.sources import ArraySource, ImageSource, Sample, Source
from dmtl.errors import DataError

from .conftest import WritePngs, pixels, save_png


def test_image_source_reads_exact_pixels_and_labels(
    write_pngs: WritePngs, tasks: list[Task]
) -> None:
    path = write_pngs(6)
    source = Source.from_manifest("s", path, None, tasks)
    assert isinstance(source, ImageSource) and len(source) == 6
    assert source.channels == 1  # guessed from the grey PNGs
    expected = torch.from_numpy(pixels(6)).float() / 255
    for i in range(6):
        sample = source[i]
        assert isinstance(sample, Sample) and sample.source == 0
        assert torch.equal(sample.x, expected[i])
        assert int(sample.labels["digit"]) == i % 3
        assert sample.labels["attr"].tolist()[0] == float(i % 2 == 0)
        assert np.isnan(sample.labels["attr"].tolist()[1])
    assert source.ids.tolist() == [f"img/{i}.png" for i in range(6)]
    assert source.input_shape == (1, 8, 8)


def test_channels_resize_and_normalisation(write_pngs: WritePngs, tasks: list[Task]) -> None:
    grey = write_pngs(2)
    rgb = Source.from_manifest("s", grey, None, tasks, channels=3)
    x = rgb[0].x
    assert x.shape == (3, 8, 8) and torch.equal(x[0], x[2])
    resized = Source.from_manifest("s", grey, None, tasks, image_size=(4, 6))
    assert resized[1].x.shape == (1, 4, 6)
    plain = Source.from_manifest("s", grey, None, tasks)[0].x
    normed = Source.from_manifest("s", grey, None, tasks, mean=0.5, std=0.25)[0].x
    torch.testing.assert_close(normed, (plain - 0.5) / 0.25)
    colour = write_pngs(2, channels=3, folder="rgb")
    source = Source.from_manifest("c", colour, None, tasks, mean=[0.1, 0.2, 0.3], std=[1, 2, 3])
    assert source.input_shape == (3, 8, 8)
    expected = torch.from_numpy(pixels(2, 3)).float()[1] / 255
    stats = torch.tensor([0.1, 0.2, 0.3]).view(3, 1, 1), torch.tensor([1.0, 2, 3]).view(3, 1, 1)
    torch.testing.assert_close(source[1].x, (expected - stats[0]) / stats[1])
    with pytest.raises(DataError, match="mean needs 1 or 3 values"):
        Source.from_manifest("c", colour, None, tasks, mean=[0.1, 0.2], std=[1.0, 1.0])


def test_missing_files_are_counted_and_listed_up_front(
    write_pngs: WritePngs, tasks: list[Task]
) -> None:
    path = write_pngs(10)
    for i in (1, 3, 4, 5, 7, 8, 9):
        (path.parent / f"img/{i}.png").unlink()
    with pytest.raises(DataError) as info:
        Source.from_manifest("s", path, None, tasks)
    message = str(info.value)
    assert str(path) in message and "column 'image'" in message
    assert "7 of 10 image file(s) are missing" in message
    for i in (1, 3, 4, 5, 7):
        assert f"row {i + 1}: " in message and f"img/{i}.png" in message
    assert "img/8.png" not in message and "img/9.png" not in message
    lazy = Source.from_manifest("s", path, None, tasks, check_files=False)
    with pytest.raises(DataError, match=r"1\.png: image file not found"):
        lazy[1]
    (path.parent / "img/0.png").unlink()  # the first image is opened to guess the channels
    with pytest.raises(DataError, match=r"row 1 \(line 2\), column 'image'"):
        Source.from_manifest("s", path, None, tasks, check_files=False)


def test_corrupt_image_raises_or_is_skipped_and_counted(
    write_pngs: WritePngs, tasks: list[Task]
) -> None:
    path = write_pngs(5)
    broken = path.parent / "img/2.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    source = Source.from_manifest("s", path, None, tasks)
    source[1]
    with pytest.raises(DataError, match=r"img/2\.png: cannot decode the image"):
        source[2]
    with pytest.warns(UserWarning, match="skipped 1 corrupt image"):
        skipping = Source.from_manifest("s", path, None, tasks, skip_corrupt=True)
    assert skipping.skipped_corrupt == 1 and skipping.skipped_paths == [str(broken)]
    assert len(skipping) == 4
    assert skipping.ids.tolist() == ["img/0.png", "img/1.png", "img/3.png", "img/4.png"]
    assert skipping.labels["digit"].tolist() == [0, 1, 0, 1]  # rows 0, 1, 3, 4
    for i in range(4):
        skipping[i]


def test_truncated_image_is_caught_by_skip_corrupt(
    write_pngs: WritePngs, tasks: list[Task]
) -> None:
    path = write_pngs(3, size=(64, 64))
    target = path.parent / "img/0.png"
    target.write_bytes(target.read_bytes()[:-40])  # header intact, data cut
    with pytest.warns(UserWarning):
        source = Source.from_manifest("s", path, None, tasks, skip_corrupt=True)
    assert source.skipped_corrupt == 1 and len(source) == 2


def test_dataframe_manifest_needs_a_root(tmp_path: Path, tasks: list[Task]) -> None:
    frame = pd.DataFrame({"image": ["a.png"], "digit": ["one"]})
    with pytest.raises(DataError, match="give the root folder"):
        Source.from_manifest("s", frame, None, tasks)
    save_png(tmp_path / "a.png", pixels(1)[0])
    source = Source.from_manifest("s", frame, tmp_path, tasks)
    assert int(source[0].labels["digit"]) == 1


def test_array_source_from_arrays_and_uint8(tasks: list[Task]) -> None:
    array = np.random.default_rng(0).random((5, 1, 4, 4), dtype=np.float32)
    source = ArraySource("a", tasks, array, {"digit": np.array([0, 1, 2, -1, 0])})
    assert torch.equal(source[2].x, torch.from_numpy(array[2]))
    assert int(source[3].labels["digit"]) == -1 and source[3].labels["attr"].isnan().all()
    as_bytes = ArraySource("b", tasks, pixels(3), {})
    assert torch.equal(as_bytes[1].x, torch.from_numpy(pixels(3)[1]).float() / 255)
    flat = ArraySource("f", tasks, np.zeros((2, 7), np.float32), {})
    assert flat[0].x.shape == (7,)
    with pytest.raises(DataError, match=r"\(N, C, H, W\) or \(N, D\)"):
        ArraySource("c", tasks, np.zeros((2, 3, 4), np.float32), {})
    with pytest.raises(DataError, match="expected labels of shape"):
        ArraySource("d", tasks, array, {"digit": np.array([0, 1])})


def test_array_source_from_index_manifest_and_npy(write_pngs: WritePngs, tasks: list[Task]) -> None:
    folder = write_pngs(4).parent  # writes pixels.npy (uint8) beside the PNGs
    frame = pd.DataFrame({"index": [3, 0], "digit": ["two", "zero"], "split": ["train", "test"]})
    source = Source.from_manifest("a", frame, folder, tasks, array="pixels.npy")
    assert isinstance(source, ArraySource) and isinstance(source.array, np.memmap)
    assert torch.equal(source[0].x, torch.from_numpy(pixels(4)[3]).float() / 255)
    # pickles (to DataLoader workers) as its path, then re-opens the file
    blob = pickle.dumps(source)
    assert len(blob) < pixels(4).nbytes + 2000
    clone = pickle.loads(blob)
    assert torch.equal(clone[1].x, source[1].x)
    manifest = folder / "index.csv"
    manifest.write_text("index,digit\n0,zero\n9,one\n")
    with pytest.raises(DataError) as info:
        Source.from_manifest("a", manifest, None, tasks, array="pixels.npy")
    assert f"{manifest}, row 2 (line 3), column 'index'" in str(info.value)
    assert "index 9 is outside the array's 4 rows" in str(info.value)
    with pytest.raises(DataError, match="give the array"):
        Source.from_manifest("a", manifest, None, tasks)


def test_with_labels_subset_and_split(write_pngs: WritePngs, tasks: list[Task]) -> None:
    source = Source.from_manifest("s", write_pngs(6), None, tasks)
    hidden = source.with_labels({"digit": np.full(6, -1)})
    assert (hidden.labels["digit"] == -1).all() and (source.labels["digit"] != -1).all()
    np.testing.assert_array_equal(hidden.labels["attr"], source.labels["attr"])  # kept
    assert int(hidden[0].labels["digit"]) == -1
    with pytest.raises(DataError, match="no task"):
        source.with_labels({"colour": np.zeros(6)})
    with pytest.raises(DataError, match="out of range"):
        source.with_labels({"digit": np.full(6, 3)})
    with pytest.raises(DataError, match=r"expected 0 or 1 \(or NaN\)"):
        source.with_labels({"attr": np.full((6, 2), 2.0)})
    train = source.split("train")
    assert train.ids.tolist() == ["img/0.png", "img/2.png", "img/4.png"]
    assert train.labels["digit"].tolist() == [0, 2, 1]
    assert torch.equal(train[1].x, source[2].x)
    assert len(source.split("val")) == 0
    with pytest.raises(DataError, match="unknown split"):
        source.split("dev")
    no_split = ArraySource("a", tasks, np.zeros((2, 3), np.float32), {})
    with pytest.raises(DataError, match="no split column"):
        no_split.split("train")
    sub = source.subset([5, 0])
    assert sub.ids.tolist() == ["img/5.png", "img/0.png"] and torch.equal(sub[0].x, source[5].x)


def test_training_augmentation_else_the_evaluation_transform_then_normalisation(
    tasks: list[Task],
) -> None:
    array = np.random.default_rng(0).random((4, 1, 6, 6), dtype=np.float32)
    source = ArraySource("a", tasks, array, {}, mean=[0.5], std=[2.0]).with_transforms(
        augment=lambda x: x.flip(-1), eval_transform=lambda x: x[:, 1:5, 1:5]
    )
    original = torch.from_numpy(array[0])
    assert torch.equal(source.raw_input(0), original)  # raw: not transformed
    assert torch.allclose(source[0].x, (original.flip(-1) - 0.5) / 2.0)
    evaluation = source.with_augment(None)  # what evaluation loaders use
    assert torch.allclose(evaluation[0].x, (original[:, 1:5, 1:5] - 0.5) / 2.0)
    assert evaluation.input_shape == (1, 4, 4) and evaluation.input_shape_raw == (1, 6, 6)
    with pytest.raises(DataError, match="augmentation needs image arrays"):
        ArraySource("f", tasks, np.zeros((2, 5), np.float32), {}, augment=lambda x: x)


def test_16_bit_grey_images_are_rescaled_not_clipped(tmp_path: Path) -> None:
    from PIL import Image

    from dmtl.data.sources import decode_image

    ramp = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4369)  # 0 .. 65535
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    x = decode_image(path, 1, None)
    assert torch.allclose(x[0], torch.from_numpy(ramp.astype(np.float32) / 65535.0))
    rgb = decode_image(path, 3, (8, 8))
    assert rgb.shape == (3, 8, 8) and float(rgb.min()) >= 0.0 and float(rgb.max()) <= 1.0
