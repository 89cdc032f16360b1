"""data.source images: class folders of generated PNGs (and one JPEG), read as the model wants them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgekit.data import load_dataset
from edgekit.data.folders import fill_from_model, folder_sha256, read_images
from edgekit.data.stage import dataset_key
from edgekit.errors import DataError, RecipeError
from edgekit.recipe.schema import DataSpec, ModelSpec, load_recipe

CLASSES = ("circle", "square", "triangle")
#: class -> solid colour; every image of a class is that colour, so values survive any resize
COLOURS = {"circle": (200, 40, 10), "square": (20, 180, 60), "triangle": (30, 60, 250)}
PER_CLASS = 20


def _save(path: Path, colour, mode: str, size=(16, 16)) -> None:
    image = Image.new("RGB", size, colour)
    if mode == "L":
        image = image.convert("L")
    elif mode == "RGBA":
        image = image.convert("RGBA")
        image.putalpha(90)  # translucent: dropping alpha keeps the colour itself
    elif mode == "P":
        image = image.convert("P", palette=Image.ADAPTIVE)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _make_folder(root: Path, classes=CLASSES, per_class=PER_CLASS, size=(16, 16)) -> Path:
    """``per_class`` 16x16 images per class: RGB, grey, RGBA and palette PNGs, one JPEG per class."""
    for cls in classes:
        for i in range(per_class):
            mode = ("RGB", "L", "RGBA", "P")[i % 4]
            suffix = ".jpg" if i == per_class - 1 else ".png"
            _save(root / cls / f"{i:02d}{suffix}", COLOURS.get(cls, (99, 99, 99)), "RGB" if suffix == ".jpg" else mode, size)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = _make_folder(tmp_path_factory.mktemp("images") / "shapes")
    (root / ".DS_Store").write_bytes(b"\0junk")  # hidden: ignored, not counted
    (root / "circle" / "notes.txt").write_text("not an image")  # skipped and counted
    return root


def _spec(path, **kw) -> DataSpec:
    return DataSpec(source="images", path=path, **kw)


def test_class_folders_give_labels_names_and_values(folder):
    arrays, names, info = read_images(folder, _spec(folder))
    x, y = arrays["x"], arrays["y"]
    assert names == list(CLASSES)
    assert x.shape == (3 * PER_CLASS, 16, 16, 3) and x.dtype == np.float32
    assert y.dtype == np.int64 and np.bincount(y).tolist() == [PER_CLASS] * 3
    assert 0.0 <= x.min() and x.max() <= 1.0
    first = {cls: x[list(y).index(i)] for i, cls in enumerate(CLASSES)}  # 00.png: RGB
    for cls, image in first.items():
        np.testing.assert_array_equal(image, np.broadcast_to(np.float32(COLOURS[cls]) / 255, (16, 16, 3)))
    grey = x[1]  # circle/01.png, saved grey: one value, replicated over the three channels
    assert np.ptp(grey) == 0 and grey[0, 0, 0] == np.float32(
        np.asarray(Image.new("RGB", (1, 1), COLOURS["circle"]).convert("L"))[0, 0]) / 255
    np.testing.assert_array_equal(x[2], x[0])  # RGBA with alpha 90: the colour, alpha dropped
    np.testing.assert_allclose(x[3], x[0], atol=2 / 255)  # palette PNG (adaptive palette rounds)
    np.testing.assert_allclose(x[PER_CLASS - 1], x[0], atol=6 / 255)  # the JPEG, lossy
    record = info["images"]
    assert record["files"] == 3 * PER_CLASS and record["skipped_files"] == 1 and record["resized"] == 0
    assert record["image_size"] == [16, 16] and record["channels"] == 3
    assert record["modes"] == {"L": 15, "P": 12, "RGB": 18, "RGBA": 15}


def test_load_dataset_splits_the_folder_and_records_it(folder):
    data = load_dataset(_spec(folder), seed=0, calibration_samples=8)
    assert data.class_names == list(CLASSES) and data.input_shape == (16, 16, 3)
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 3 * PER_CLASS
    assert data.info["images"]["skipped_files"] == 1 and len(data.info["sha256"]) == 64


def test_resize_and_channels_follow_the_spec(folder):
    arrays, _, info = read_images(folder, _spec(folder, image_size=[8, 12], channels=1))
    x = arrays["x"]
    assert x.shape == (3 * PER_CLASS, 8, 12, 1) and info["images"]["resized"] == 3 * PER_CLASS
    grey = np.asarray(Image.new("RGB", (1, 1), COLOURS["circle"]).convert("L"))[0, 0] / 255
    np.testing.assert_allclose(x[0], grey, atol=1e-6)  # a solid colour stays itself through the resize
    rgba = read_images(folder, _spec(folder, image_size=4, channels=4))[0]["x"]
    assert rgba.shape == (3 * PER_CLASS, 4, 4, 4)
    np.testing.assert_allclose(rgba[2, ..., 3], 90 / 255, atol=1e-6)  # RGBA keeps its alpha when 4 are wanted
    np.testing.assert_allclose(rgba[1, ..., 3], 1.0)  # grey gets an opaque one


def test_grey_only_images_give_one_channel_and_16_bit_pngs_scale(tmp_path):
    for cls, value in (("dark", 1000), ("light", 60000)):
        for i in range(3):
            (tmp_path / cls).mkdir(exist_ok=True)
            Image.fromarray(np.full((6, 5), value, np.uint16)).save(tmp_path / cls / f"{i}.png")
    arrays, names, _ = read_images(tmp_path, _spec(tmp_path))
    assert arrays["x"].shape == (6, 6, 5, 1) and names == ["dark", "light"]
    np.testing.assert_allclose(arrays["x"][0], 1000 / 65535, rtol=1e-6)
    np.testing.assert_allclose(arrays["x"][-1], 60000 / 65535, rtol=1e-6)
    assert read_images(tmp_path, _spec(tmp_path, channels=3))[0]["x"].shape == (6, 6, 5, 3)


def test_mixed_sizes_need_image_size_or_the_zoo_input_size(tmp_path):
    root = _make_folder(tmp_path / "d", per_class=2)
    _save(root / "square" / "big.png", COLOURS["square"], "RGB", size=(20, 24))
    with pytest.raises(DataError, match=r"come in 2 sizes \(height x width: 16x16 in circle/00.png, 24x20 in square/big.png, \.\.\.\); "
                                        r"set data.image_size"):
        read_images(root, _spec(root))
    arrays, _, info = read_images(root, _spec(root, image_size=[10, 10]))
    assert arrays["x"].shape == (7, 10, 10, 3) and info["images"]["resized"] == 7
    spec = _spec(root)
    # a zoo model's input_size (mobilenet_v2 and the other applications: a resize inside the model)
    fill_from_model(spec, ModelSpec.model_construct(arch="mobilenet_v2", params={"input_size": 12}, file=None))
    assert spec.image_size is None  # the zoo resizes inside the model: used only because sizes differ
    arrays, _, info = read_images(root, spec)
    assert arrays["x"].shape == (7, 12, 12, 3) and info["images"]["size_from"].startswith("model.params.input_size")


def test_split_folders_keep_their_splits_and_train_classes(tmp_path):
    _make_folder(tmp_path / "train", per_class=4)
    _make_folder(tmp_path / "test", classes=("circle", "triangle"), per_class=2)
    _make_folder(tmp_path / "valid", classes=("square",), per_class=2)
    arrays, names, _ = read_images(tmp_path, _spec(tmp_path))
    assert sorted(arrays) == ["x_test", "x_train", "x_val", "y_test", "y_train", "y_val"]
    assert names == list(CLASSES) and len(arrays["x_train"]) == 12
    assert arrays["y_test"].tolist() == [0, 0, 2, 2] and arrays["y_val"].tolist() == [1, 1]  # ids from train's names
    data = load_dataset(_spec(tmp_path), seed=0, calibration_samples=4)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (12, 2, 4)

    _make_folder(tmp_path / "test", classes=("hexagon",), per_class=1)  # a class train/ lacks
    with pytest.raises(DataError, match=r"test/hexagon is a class that .*train lacks"):
        read_images(tmp_path, _spec(tmp_path))


def test_a_class_named_like_a_split_stays_a_class(tmp_path):
    for cls in ("bus", "car", "train"):
        for i in range(2):
            _save(tmp_path / cls / f"{i}.png", (i * 50, 10, 10), "RGB")
    arrays, names, _ = read_images(tmp_path, _spec(tmp_path))
    assert names == ["bus", "car", "train"] and sorted(arrays) == ["x", "y"]


def test_images_in_deeper_folders_belong_to_their_class(tmp_path):
    _save(tmp_path / "a" / "2024" / "day1" / "0.png", (1, 2, 3), "RGB")
    _save(tmp_path / "a" / "1.png", (1, 2, 3), "RGB")
    _save(tmp_path / "b" / ".hidden" / "0.png", (9, 9, 9), "RGB")  # hidden folder: ignored
    _save(tmp_path / "b" / "0.png", (9, 9, 9), "RGB")
    arrays, names, _ = read_images(tmp_path, _spec(tmp_path))
    assert names == ["a", "b"] and arrays["y"].tolist() == [0, 0, 1]


def test_a_flat_folder_is_label_free_samples_for_fidelity(tmp_path):
    for i in range(3):
        _save(tmp_path / f"{i}.png", (i, i, i), "L")
    arrays, names, info = read_images(tmp_path, _spec(tmp_path), task="fidelity")
    assert sorted(arrays) == ["x"] and names == [] and arrays["x"].shape == (3, 16, 16, 1)
    assert info["images"]["layout"] == "flat folder, no labels"
    with pytest.raises(DataError, match="no class folders; task classification needs one subfolder"):
        read_images(tmp_path, _spec(tmp_path))
    with pytest.raises(DataError, match="not regression"):
        read_images(tmp_path, _spec(tmp_path), task="regression")


@pytest.mark.parametrize("case, pattern", [
    ("missing", r"folder not found: .*d; check the path"),
    ("file", r"is a file; source images reads a folder"),
    ("empty", r"no images \(.png.*\) in .*; put one subfolder"),
    ("empty class", r"class folder .*b has no images .* \(skipped 1 other files\); add images or remove the folder"),
    ("corrupt", r"a/bad.png: cannot read as an image .*; remove or replace the file"),
    ("truncated", r"a/cut.png: cannot decode the image"),
    ("stray images", r"holds 1 images \(e.g. stray.png\) next to the folders a, b"),
    ("test only", r"has test/ but no train/"),
])
def test_bad_folders_fail_in_one_line_naming_the_problem(tmp_path, case, pattern):
    root = tmp_path / "d"
    if case != "missing":
        root.mkdir()
    if case not in ("missing", "empty", "file"):
        parent = root / "test" if case == "test only" else root
        for cls in ("a", "b"):
            _save(parent / cls / "0.png", (5, 5, 5), "RGB")
    if case == "file":
        root = tmp_path / "data.npz"
        root.write_bytes(b"x")
    elif case == "empty class":
        shutil.rmtree(root / "b")
        (root / "b").mkdir()
        (root / "b" / "readme.md").write_text("x")
    elif case == "corrupt":
        (root / "a" / "bad.png").write_bytes(b"not a png at all")
    elif case == "truncated":  # the header reads, the pixels do not
        _save(tmp_path / "whole.png", (1, 1, 1), "RGB", size=(64, 64))
        (root / "a" / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:60])
    elif case == "stray images":
        _save(root / "stray.png", (5, 5, 5), "RGB")
    with pytest.raises(DataError, match=pattern) as info:
        load_dataset(_spec(root, image_size=16), seed=0, calibration_samples=4)
    assert "\n" not in str(info.value)


def test_the_content_hash_follows_every_image(tmp_path):
    root = _make_folder(tmp_path / "d", per_class=2)
    spec = _spec(root)
    before, key = folder_sha256(root), dataset_key(spec, 0, 8, "classification")
    (root / "circle" / "notes.txt").write_text("x")
    assert folder_sha256(root) != before  # a skipped file is counted in info: it is in the hash
    (root / "circle" / "notes.txt").unlink()
    assert folder_sha256(root) == before and dataset_key(spec, 0, 8, "classification") == key
    changes = [
        lambda: _save(root / "circle" / "00.png", (0, 0, 1), "RGB"),  # an image changes
        lambda: (root / "circle" / "00.png").rename(root / "square" / "00b.png"),  # moves to another class
        lambda: _save(root / "triangle" / "new.png", (0, 0, 1), "RGB"),  # one is added
    ]
    seen = {before}
    for change in changes:
        change()
        now = folder_sha256(root)
        assert now not in seen and dataset_key(spec, 0, 8, "classification") != key
        seen.add(now)


def _config(shape, key="batch_input_shape") -> dict:
    return {"class_name": "Functional", "config": {"layers": [
        {"class_name": "InputLayer", "config": {key: [None, *shape], "name": "image"}},
        {"class_name": "Dense", "config": {"units": 3}}]}}


def _fake_keras_file(path: Path, shape, key="batch_input_shape") -> Path:
    """A .keras zip whose config.json has one InputLayer: all that load_recipe reads of it."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(_config(shape, key)))
    return path


def _protobuf(*fields) -> bytes:
    """Length-delimited protobuf fields (number, bytes): enough to write a keras_metadata.pb."""
    out = b""
    for number, value in fields:
        out += bytes([number << 3 | 2])
        size = len(value)
        while size > 0x7F:
            out, size = out + bytes([size & 0x7F | 0x80]), size >> 7
        out += bytes([size]) + value
    return out


@pytest.mark.parametrize("kind", ["keras 2 .keras", "keras 3 .keras", "h5", "savedmodel"])
def test_the_model_files_input_shape_is_read_without_tensorflow(tmp_path, kind):
    import h5py

    shape = [30, 20, 3]
    if kind.endswith(".keras"):
        path = _fake_keras_file(tmp_path / "m.keras", shape, "batch_shape" if "3" in kind else "batch_input_shape")
    elif kind == "h5":
        path = tmp_path / "m.h5"
        with h5py.File(path, "w") as f:
            f.attrs["model_config"] = json.dumps(_config(shape))
    else:  # tf_keras' keras_metadata.pb: SavedMetadata.nodes (1) with node_path (3) and metadata (5)
        path = tmp_path / "saved"
        path.mkdir()
        config = _config(shape)
        config["config"]["layers"][0]["config"]["batch_input_shape"] = {"class_name": "__tuple__", "items": [None, *shape]}
        nodes = [_protobuf((3, b"root.layer-0"), (5, b"{}")), _protobuf((3, b"root"), (5, json.dumps(config).encode()))]
        (path / "keras_metadata.pb").write_bytes(_protobuf(*[(1, node) for node in nodes]))
        (path / "saved_model.pb").write_bytes(b"")
    spec = _spec(tmp_path)
    fill_from_model(spec, ModelSpec(file=path))
    assert spec.image_size == (30, 20) and spec.channels == 3
    if kind == "savedmodel":  # where tf_keras' own reader would import TensorFlow: a fresh interpreter says not
        script = ("import sys; from pathlib import Path; from edgekit.models.files import file_input_shape; "
                  f"print(file_input_shape(Path({str(path)!r})), 'tensorflow' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
        assert out.stdout.split() == ["[30,", "20,", "3]", "False"], out.stderr[-500:]


def test_the_recipe_takes_image_size_and_channels_from_the_model_file(folder, tmp_path):
    _fake_keras_file(tmp_path / "m.keras", [24, 20, 1])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\ndata: {{source: images, path: {folder}}}\nmodel: {{file: m.keras}}\n")
    loaded = load_recipe(recipe)
    assert loaded.data.image_size == (24, 20) and loaded.data.channels == 1
    arrays, _, info = read_images(folder, loaded.data)
    assert arrays["x"].shape == (3 * PER_CLASS, 24, 20, 1)
    assert info["images"]["size_from"] == "model.file" and info["images"]["channels_from"] == "model.file"
    recipe.write_text(f"name: t\ndata: {{source: images, path: {folder}, image_size: 8, channels: 3}}\nmodel: {{file: m.keras}}\n")
    assert load_recipe(recipe).data.image_size == (8, 8) and load_recipe(recipe).data.channels == 3  # explicit wins
    _fake_keras_file(tmp_path / "m.keras", [None, None, 3])  # any size: the images' own, channels from the model
    recipe.write_text(f"name: t\ndata: {{source: images, path: {folder}}}\nmodel: {{file: m.keras}}\n")
    assert load_recipe(recipe).data.image_size is None and load_recipe(recipe).data.channels == 3


def test_recipe_fields_are_checked(tmp_path):
    recipe = tmp_path / "r.yaml"
    for data, pattern in [("{source: npz, path: d.npz, image_size: 32}", "data.image_size applies to source images only"),
                          ("{source: images, path: d, channels: 2}", "channels"),
                          ("{source: images, path: d, image_size: [32, 32, 3]}", r"image_size: expected \[height, width\] or one number"),
                          ("{source: images}", "source images needs a path: add data.path: my_images")]:
        recipe.write_text(f"name: t\ndata: {data}\nmodel: {{arch: lenet}}\n")
        with pytest.raises(RecipeError, match=pattern):
            load_recipe(recipe)


def test_validate_reads_the_folder(folder, tmp_path):
    from edgekit.cli import cli

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\ndata: {{source: images, path: {folder}, image_size: [12, 12]}}\nmodel: {{arch: lenet}}\n")
    result = CliRunner().invoke(cli, ["validate", str(recipe)])
    assert result.exit_code == 0, result.output
    assert "data images" in result.output and "input [12, 12, 3], 3 classes" in result.output


def test_an_image_past_pillows_bomb_guard_is_named(folder, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 16x16 images are then "huge" (Pillow refuses 2x this)
    with pytest.raises(DataError, match=r"circle/00.png: more pixels than Pillow opens \(200, its guard"):
        read_images(folder, _spec(folder))
