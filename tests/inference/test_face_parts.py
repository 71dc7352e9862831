"""The parts of face prediction: crop recipes (hand-worked affine maps), the readers' recipes,
the tracker, the smoothing, the detector registry, and the checked download cache (local
files only: nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dmtl.data.crops import CropRecipe, affine_to_photo, crop_face
from dmtl.data.readers import reader_crop_recipe
from dmtl.errors import ConfigError
from dmtl.inference.card import training_crop
from dmtl.inference.detectors import DETECTORS, create_detector, parse_detector_options
from dmtl.inference.downloads import DownloadError, cached_file, sha256_of
from dmtl.inference.tracking import IouTracker, ema


def test_square_recipe_is_the_scaled_box_around_its_centre() -> None:
    recipe = CropRecipe(kind="square", box_scale=1.5, size=(10, 10))
    # box (20, 40, 10, 8): centre (25, 44), side 1.5 * 10 = 15, 1.5 photo pixels per output one
    assert affine_to_photo(recipe, (20.0, 40.0, 10.0, 8.0), None) == pytest.approx(
        (1.5, 0.0, 17.5, 0.0, 1.5, 36.5)
    )


def test_eye_aligned_recipe_puts_the_eyes_where_it_says() -> None:
    recipe = CropRecipe(kind="eye_aligned", size=(100, 100), left_eye=(0.3, 0.4),
                        right_eye=(0.7, 0.4))
    # eyes in the photo at (60, 50) (image left) and (100, 90): 40 * sqrt(2) apart, 45 degrees
    landmarks = np.array([[100.0, 90.0], [60.0, 50.0]])  # the eye on the image's right first
    a, b, c, d, e, f = affine_to_photo(recipe, (0, 0, 1, 1), landmarks)
    for (u, v), (x, y) in (((30, 40), (60, 50)), ((70, 40), (100, 90))):
        assert (a * u + b * v + c, d * u + e * v + f) == pytest.approx((x, y))
    # a similarity: scale 40 sqrt(2) / 40 = sqrt(2), rotation 45 degrees -> a = e = 1, d = -b = 1
    assert (a, b, d, e) == pytest.approx((1.0, -1.0, 1.0, 1.0))


def test_crop_face_cuts_the_box_and_pads_with_black() -> None:
    photo = np.zeros((40, 40, 3), np.uint8)
    photo[10:20, 10:20] = 200
    recipe = CropRecipe(kind="square", box_scale=1.0, size=(10, 10))
    inside = np.asarray(crop_face(Image.fromarray(photo), (10, 10, 10, 10), recipe))
    assert inside.shape == (10, 10, 3) and (inside[1:-1, 1:-1] == 200).all()
    outside = np.asarray(crop_face(Image.fromarray(photo), (35, 35, 10, 10), recipe))
    assert (outside[6:, 6:] == 0).all()


def test_face_readers_declare_their_recipe() -> None:
    assert reader_crop_recipe("affwild2").kind == "eye_aligned"  # type: ignore[union-attr]
    assert reader_crop_recipe("rafdb").size == (100, 100)  # type: ignore[union-attr]
    assert reader_crop_recipe("rafdb", {"aligned": False}) is None  # whole photos
    assert reader_crop_recipe("celeba").size == (178, 218)  # type: ignore[union-attr]
    for name in ("affectnet", "disfa", "bp4d", "emotionet"):
        assert reader_crop_recipe(name) is not None
    assert reader_crop_recipe("cub") is None


def test_the_card_takes_the_first_face_sources_recipe() -> None:
    def source(**kw: object) -> SimpleNamespace:
        return SimpleNamespace(**({"reader": None, "options": {}} | kw))

    config = SimpleNamespace(sources=[
        source(), source(reader="cub"), source(reader="rafdb", options={"aligned": True}),
        source(reader="affwild2"),
    ])
    assert training_crop(config) == reader_crop_recipe("rafdb")  # type: ignore[arg-type]
    assert training_crop(SimpleNamespace(sources=[source()])) is None  # type: ignore[arg-type]


def test_tracker_keeps_ids_and_ends_lost_tracks() -> None:
    tracker = IouTracker(max_age=2)
    assert tracker.update([(0, 0, 10, 10), (100, 0, 10, 10)]) == [0, 1]
    assert tracker.update([(103, 0, 10, 10)]) == [1]
    # far apart frames: no overlap, but near and of a like size -> the same track
    assert tracker.update([(112, 2, 11, 11)]) == [1]
    assert tracker.update([]) == []
    assert tracker.update([]) == []
    assert tracker.update([]) == []
    assert tracker.update([(112, 2, 11, 11)]) == [2]  # track 1 ended: a new id


def test_ema_smooths_each_group_alone() -> None:
    values = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 3.0], [0.0, 1.0]])
    out = ema(values, ["a", "a", "b", "a"], 0.25)
    assert out[:3].tolist() == [[1.0, 0.0], [0.75, 0.25], [3.0, 3.0]]
    assert out[3].tolist() == pytest.approx([0.5625, 0.4375])


def test_detector_registry_checks_names_and_options() -> None:
    assert {"haar", "lbp", "yunet"} <= set(DETECTORS)
    with pytest.raises(ConfigError, match="unknown face detector"):
        create_detector("retina")
    with pytest.raises(ConfigError, match="max_sidee"):
        create_detector("lbp", {"max_sidee": 3})
    assert parse_detector_options(["max_side=480", "scale_factor=1.1"]) == {
        "max_side": 480, "scale_factor": 1.1}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_detector_options(["480"])


def test_haar_needs_opencv_4() -> None:
    cv2 = pytest.importorskip("cv2")
    if hasattr(cv2, "CascadeClassifier"):
        from skimage.data import astronaut

        assert len(create_detector("haar").detect(astronaut())) >= 1
    else:
        with pytest.raises(Exception, match="OpenCV < 5"):
            create_detector("haar")


def test_yunet_takes_a_local_model_file_and_names_a_missing_one(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    with pytest.raises(Exception, match="no such YuNet model file"):
        create_detector("yunet", {"model": str(tmp_path / "missing.onnx")})


def test_cache_fetches_once_and_checks_the_sha256(tmp_path: Path) -> None:
    origin = tmp_path / "model.onnx"
    origin.write_bytes(b"weights")
    digest = sha256_of(origin)
    cache = tmp_path / "cache"
    path = cached_file(origin.as_uri(), digest, folder=cache)  # file:// through urllib
    assert path == cache / "model.onnx" and path.read_bytes() == b"weights"

    def no_network(url: str, target: Path) -> None:
        raise AssertionError("fetched again")

    assert cached_file(origin.as_uri(), digest, folder=cache, fetch=no_network) == path


def test_cache_refuses_a_wrong_checksum_and_keeps_nothing(tmp_path: Path) -> None:
    origin = tmp_path / "model.onnx"
    origin.write_bytes(b"changed weights")
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=r"SHA-256 .* expected 00"):
        cached_file(origin.as_uri(), "00" * 32, folder=cache)
    assert list(cache.iterdir()) == []


def test_a_failed_download_is_one_line(tmp_path: Path) -> None:
    def offline(url: str, target: Path) -> None:
        raise OSError("Network is unreachable")

    with pytest.raises(DownloadError) as error:
        cached_file("https://example.org/yunet.onnx", "00" * 32, folder=tmp_path, fetch=offline)
    assert str(error.value) == (
        "cannot download https://example.org/yunet.onnx (Network is unreachable); "
        "download it yourself and give its path"
    )
    assert list(tmp_path.iterdir()) == []

coordinate = st.floats(-500, 500, allow_nan=False)


@settings(max_examples=50, deadline=None)
@given(x=coordinate, y=coordinate, w=st.floats(5, 300), h=st.floats(5, 300),
       scale=st.floats(0.5, 2.0))
def test_square_recipe_maps_the_output_centre_to_the_box_centre(
    x: float, y: float, w: float, h: float, scale: float
) -> None:
    recipe = CropRecipe(kind="square", box_scale=scale, size=(64, 64))
    a, b, c, d, e, f = affine_to_photo(recipe, (x, y, w, h), None)
    assert (a * 32 + b * 32 + c, d * 32 + e * 32 + f) == pytest.approx((x + w / 2, y + h / 2))
    assert a * 64 == pytest.approx(scale * max(w, h))  # the side of the square


@settings(max_examples=50, deadline=None)
@given(lx=coordinate, ly=coordinate, dx=st.floats(5, 200), dy=st.floats(-100, 100))
def test_eye_aligned_recipe_maps_both_eyes_exactly(
    lx: float, ly: float, dx: float, dy: float
) -> None:
    recipe = CropRecipe(kind="eye_aligned", size=(112, 112))
    left, right = np.array([lx, ly]), np.array([lx + dx, ly + dy])
    a, b, c, d, e, f = affine_to_photo(recipe, (0, 0, 1, 1), np.stack([right, left]))
    for (u, v), eye in ((recipe.left_eye, left), (recipe.right_eye, right)):
        u, v = u * 112, v * 112
        assert (a * u + b * v + c, d * u + e * v + f) == pytest.approx(tuple(eye), abs=1e-6)
    assert a == pytest.approx(e) and b == pytest.approx(-d)  # a similarity, no shear
