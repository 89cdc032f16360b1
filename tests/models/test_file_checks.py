"""A model or weights file reads nothing but itself: HDF5 objects that point at other files and
files that are two formats at once are refused in one line, in the build's own loader
(``load_model_file``, safe mode on) and in the reader of ``weights:`` files."""

from __future__ import annotations

import shutil
import zipfile

import h5py
import numpy as np
import pytest

from edgekit.errors import ModelError
from edgekit.models.applications import read_weights_file
from edgekit.models.file_checks import check_file, file_kind
from edgekit.models.files import load_model_file

SECRET = b"root:x:0:0:root:/root:/bin/bash\n" * 8  # 256 bytes standing for /etc/passwd


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny tf_keras model as .h5 and its weights, a Keras 3 .keras file, and a secret file."""
    import keras
    import tf_keras

    folder = tmp_path_factory.mktemp("model-files")
    (folder / "secret.bin").write_bytes(SECRET)
    inputs = tf_keras.Input((8, 8, 1))
    outputs = tf_keras.layers.Dense(3, name="head")(tf_keras.layers.Flatten()(inputs))
    model = tf_keras.Model(inputs, outputs)
    model.save(folder / "clean.h5")
    model.save_weights(folder / "weights.h5")
    k3 = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="head")])
    k3.save(folder / "clean.keras")
    return folder


def _kernel(f: h5py.File, rows: int) -> str:
    names = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) and obj.shape[:1] == (rows,) else None)
    return names[0]


def _external(path, secret, rows=64) -> None:
    """Replace the kernel of ``rows`` inputs with a dataset stored in ``secret`` (HDF5 external storage)."""
    with h5py.File(path, "r+") as f:
        name = _kernel(f, rows)
        shape, dtype = f[name].shape, f[name].dtype
        del f[name]
        f.create_dataset(name, shape=shape, dtype=dtype, external=[(str(secret), 0, int(np.prod(shape)) * dtype.itemsize)])


def _one_line(info) -> str:
    text = str(info.value)
    assert "\n" not in text
    return text


def test_a_kernel_stored_in_another_file_is_refused(files, tmp_path):
    """The case found: a Dense kernel stored in /etc/passwd, loaded with safe mode on, and the
    model and .tflite held the file's first bytes."""
    path = shutil.copy(files / "clean.h5", tmp_path / "model.h5")
    _external(path, files / "secret.bin")
    with pytest.raises(ModelError) as info:
        load_model_file(path, safe_mode=True)
    assert "keeps its data in another file (external storage:" in _one_line(info)
    assert "secret.bin" in str(info.value) and "/model_weights/head/head/kernel:0" in str(info.value)
    model, _ = load_model_file(files / "clean.h5", safe_mode=True)  # the file as Keras wrote it loads
    assert model.get_layer("head").kernel.shape == (64, 3)


def test_external_links_and_virtual_datasets_are_refused(files, tmp_path):
    with h5py.File(tmp_path / "source.h5", "w") as f:
        f["secret"] = np.frombuffer(SECRET, np.float32).reshape(64, 1).repeat(3, 1)
    linked = shutil.copy(files / "clean.h5", tmp_path / "linked.h5")
    virtual = shutil.copy(files / "clean.h5", tmp_path / "virtual.h5")
    with h5py.File(linked, "r+") as f:
        name = _kernel(f, 64)
        del f[name]
        f[name] = h5py.ExternalLink(str(tmp_path / "source.h5"), "secret")
    with h5py.File(virtual, "r+") as f:
        name = _kernel(f, 64)
        del f[name]
        layout = h5py.VirtualLayout(shape=(64, 3), dtype=np.float32)
        layout[:] = h5py.VirtualSource(str(tmp_path / "source.h5"), "secret", shape=(64, 3))
        f.create_virtual_dataset(name, layout)
    with pytest.raises(ModelError) as info:
        load_model_file(linked)
    assert "is an external link to" in _one_line(info) and "source.h5:secret" in str(info.value)
    with pytest.raises(ModelError) as info:
        load_model_file(virtual, safe_mode=False)  # whatever safe mode says
    assert "is a virtual dataset assembled from other files" in _one_line(info)


def test_a_file_that_is_zip_and_hdf5_at_once_is_refused(files, tmp_path):
    """An HDF5 file with a zip appended passed the safe-mode check as a zip while tf_keras loaded
    the HDF5 part; the reverse (a zip with HDF5 at a user-block offset) as well."""
    appended = tmp_path / "appended.h5"
    appended.write_bytes((files / "clean.h5").read_bytes() + (files / "clean.keras").read_bytes())
    with pytest.raises(ModelError) as info:
        load_model_file(appended)
    assert "is both a zip archive and an HDF5 file (it starts as an HDF5 file)" in _one_line(info)
    archive = (files / "clean.keras").read_bytes()
    with h5py.File(tmp_path / "user_block.h5", "w", userblock_size=1 << max(9, (len(archive) - 1).bit_length())) as f:
        f["x"] = np.zeros(3)
    prefixed = bytearray((tmp_path / "user_block.h5").read_bytes())
    prefixed[:len(archive)] = archive
    (tmp_path / "zip_first.h5").write_bytes(bytes(prefixed) + archive)
    with pytest.raises(ModelError, match=r"it starts as a zip archive"):
        file_kind(tmp_path / "zip_first.h5")
    with pytest.raises(ModelError, match="behind other leading bytes"):
        file_kind(tmp_path / "user_block.h5")  # HDF5 finds it at offset 512: Keras never writes that
    assert file_kind(files / "clean.keras") == "zip" and file_kind(files / "clean.h5") == "hdf5"


def test_the_weights_inside_a_keras_zip_and_folder_are_checked(files, tmp_path):
    with zipfile.ZipFile(files / "clean.keras") as z:
        members = {info.filename: z.read(info) for info in z.infolist()}
    inner = tmp_path / "model.weights.h5"
    inner.write_bytes(members["model.weights.h5"])
    _external(inner, files / "secret.bin", rows=8)
    members["model.weights.h5"] = inner.read_bytes()
    with zipfile.ZipFile(tmp_path / "hostile.keras", "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.raises(ModelError) as info:
        load_model_file(tmp_path / "hostile.keras")
    assert "hostile.keras:model.weights.h5: HDF5 object /" in _one_line(info)
    folder = tmp_path / "unzipped"
    folder.mkdir()
    for name, data in members.items():
        (folder / name).write_bytes(data)
    with pytest.raises(ModelError, match="keeps its data in another file"):
        check_file(folder)
    assert check_file(files / "clean.keras") == "zip"


def test_a_weights_file_is_read_by_the_same_rules(files, tmp_path):
    """``model.params.weights`` (Keras Applications weights .h5) go through the same check."""
    assert [name for name, _ in read_weights_file(files / "weights.h5")] == ["head"]
    hostile = shutil.copy(files / "weights.h5", tmp_path / "hostile.h5")
    _external(hostile, files / "secret.bin")
    with pytest.raises(ModelError) as info:
        read_weights_file(hostile)
    assert _one_line(info).startswith(f"model.params.weights: {hostile}: HDF5 object /head/head/kernel:0 keeps its data")
    with h5py.File(tmp_path / "plugin.h5", "w") as f:  # a filter id HDF5 would look for as a plugin library
        f.create_dataset("x", data=np.zeros((4, 4)), chunks=(2, 2), compression=32001, allow_unknown_filter=True)
    with pytest.raises(ModelError, match="HDF5 filter 32001, which HDF5 would load as a plugin library"):
        check_file(tmp_path / "plugin.h5", "model.params.weights")
    with pytest.raises(ModelError, match="is not an HDF5"):
        read_weights_file(files / "clean.keras")
