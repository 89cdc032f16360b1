"""In-model input preprocessing read from models made the usual ways (Keras 3 and tf_keras,
functional and Sequential, augmentation in front, an adapted Normalization, two inputs), and the
data side that feeds each input the range its layers expect."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.data import Dataset, Normalization
from edgekit.data.in_model import INFO_KEY, feed_model_range
from edgekit.errors import DataError
from edgekit.models.input_preprocessing import InputPreprocessing, detect

KERASES = ["keras3", "tf_keras"]


def _keras(name):
    if name == "keras3":
        import keras

        return keras
    import tf_keras

    return tf_keras


def _image_model(keras, first, name="image"):
    inputs = keras.Input((8, 8, 3), name=name)
    x = inputs
    for layer in first:
        x = layer(x)
    x = keras.layers.Conv2D(2, 3)(x)
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))


@pytest.mark.parametrize("flavour", KERASES)
def test_rescaling_behind_augmentation_expects_pixels(flavour):
    keras = _keras(flavour)
    layers = keras.layers
    augment = keras.Sequential([layers.RandomFlip("horizontal"), layers.RandomRotation(0.1)], name="augment")
    (found,) = detect(_image_model(keras, [augment, layers.Rescaling(1 / 255, name="to_unit")]))
    assert found.input == "image" and [layer["layer"] for layer in found.layers] == ["to_unit"]
    assert found.expected_range()[0] == "0..255"
    (signed,) = detect(_image_model(keras, [layers.Rescaling(1 / 127.5, offset=-1)]))
    assert signed.expected_range() == ("0..255", pytest.approx(0.0, abs=1e-9))  # exactly [-1, 1]
    (unit,) = detect(_image_model(keras, [layers.Rescaling(2.0, offset=-1.0)]))  # made for [0, 1]
    assert unit.expected_range()[0] == "0..1"


@pytest.mark.parametrize("flavour", KERASES)
def test_adapted_normalization_is_read_from_its_statistics(flavour):
    keras = _keras(flavour)
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (40, 8, 8, 3)).astype("float32") * np.array([1.0, 0.5, 0.8], "float32")
    norm = keras.layers.Normalization(axis=-1)
    norm.adapt(pixels)
    (found,) = detect(_image_model(keras, [keras.layers.Rescaling(1.0), norm]))
    assert found.expected_range()[0] == "0..255"
    standardized = found.apply(pixels.reshape(-1, 3))
    assert np.allclose(standardized.mean(axis=0), 0, atol=1e-3) and np.allclose(standardized.std(axis=0), 1, atol=1e-3)
    unit = keras.layers.Normalization(axis=-1)
    unit.adapt(pixels / 255)
    assert detect(_image_model(keras, [unit]))[0].expected_range()[0] == "0..1"
    back = keras.layers.Normalization(axis=-1, invert=True)
    back.adapt(pixels / 255)
    (inverted,) = detect(_image_model(keras, [back]))
    assert np.allclose(inverted.apply(np.zeros(3)), (pixels / 255).reshape(-1, 3).mean(axis=0), atol=1e-4)


@pytest.mark.parametrize("flavour", KERASES)
def test_only_inputs_that_start_with_affine_layers_are_found(flavour):
    keras = _keras(flavour)
    layers = keras.layers
    table, ids = keras.Input((4,), name="table"), keras.Input((3,), name="ids")
    norm = layers.Normalization()
    norm.adapt(np.random.default_rng(1).normal(1000, 50, (30, 4)).astype("float32"))
    two = keras.Model([table, ids], layers.Dense(1)(layers.Concatenate()([norm(table), ids])))
    assert [f.input for f in detect(two)] == ["table"]
    fork = keras.Input((4,))  # the input feeds a Rescaling and a Dense: no single chain to read
    assert detect(keras.Model(fork, layers.Add()([layers.Rescaling(2.0)(fork), layers.Dense(4)(fork)]))) == []
    plain = keras.Sequential([keras.Input((4,)), layers.Dense(2)])
    assert detect(plain) == []
    seq = keras.Sequential([keras.Input((6, 6, 1)), layers.Rescaling(1 / 255), layers.Flatten(), layers.Dense(2)])
    assert [f.expected_range()[0] for f in detect(seq)] == ["0..255"]


def _dataset(x: np.ndarray, source: str, normalization=None) -> Dataset:
    y = np.zeros(len(x), np.int64)
    return Dataset(x[:8], y[:8], x[8:10], y[8:10], x[10:], y[10:], x[:4].copy(), ["a"], info={"source": source},
                   normalization=normalization)


def _rescaling(scale: float, offset: float = 0.0) -> InputPreprocessing:
    return InputPreprocessing("image", [{"layer": "r", "class": "Rescaling", "scale": scale, "offset": offset}],
                              np.array([scale]), np.array([offset]))


def test_an_image_source_is_fed_pixels_in_every_split_and_calibration():
    x = np.random.default_rng(2).uniform(0, 1, (14, 4, 4, 3)).astype(np.float32)
    data = _dataset(x, "images")
    logs = []
    assert feed_model_range(data, [_rescaling(1 / 255)], "images", logs.append)
    for split, before in (("x_train", x[:8]), ("x_val", x[8:10]), ("x_test", x[10:]), ("x_calib", x[:4])):
        assert np.allclose(getattr(data, split), before * 255, rtol=1e-6), split
    (record,) = data.info[INFO_KEY]["inputs"]
    assert record["expects"] == "0..255" and record["scaled_by"] == 255.0 and "warning" not in record
    assert record["after_layers"][1] <= 1.0 + 1e-6
    assert not feed_model_range(data, [_rescaling(1 / 255)], "images")  # once only
    assert np.allclose(data.x_test, x[10:] * 255, rtol=1e-6)


def test_other_sources_keep_their_values_and_warn_when_far_from_the_layers_range():
    x = np.random.default_rng(3).uniform(0, 1, (14, 4, 4, 3)).astype(np.float32)
    data = _dataset(x, "npz")
    logs = []
    assert not feed_model_range(data, [_rescaling(1 / 255)], "npz", logs.append)
    assert np.array_equal(data.x_test, x[10:])
    warning = data.info[INFO_KEY]["inputs"][0]["warning"]
    assert "save the pixels 0..255" in warning and any("warning" in line for line in logs)
    # raw features behind the Normalization adapted on them: nothing to warn about
    features = np.random.default_rng(4).normal([1000, 0.5, 0], [200, 0.1, 30], (14, 3)).astype(np.float32)
    adapted = InputPreprocessing("x", [], 1 / features.std(axis=0).astype(np.float64),
                                 -features.mean(axis=0) / features.std(axis=0))
    tabular = _dataset(features, "csv")
    feed_model_range(tabular, [adapted], "csv")
    assert "warning" not in tabular.info[INFO_KEY]["inputs"][0]


def test_edgekit_normalization_on_top_of_the_models_own_is_refused():
    x = np.random.default_rng(5).uniform(0, 1, (14, 3)).astype(np.float32)
    norm = Normalization("standard", "feature", x.mean(axis=0), x.std(axis=0))
    with pytest.raises(DataError, match="remove data.normalize"):
        feed_model_range(_dataset(x, "csv", norm), [_rescaling(2.0)], "csv")
