"""Keras Applications in the zoo: flat tf_keras models that take [0, 1] images, load a Keras
weights file (with or without the ImageNet top) exactly, refuse one that does not fit in one
line, pass safe mode, and (MobileNetV2) go through tfmot's pruning and QAT wrappers."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from edgekit.errors import ModelError
from edgekit.models import ZOO, build, describe

SHAPE = (32, 32, 3)  # the smallest input the applications take: quick to build


class _Spec:
    def __init__(self, arch, **params):
        self.arch, self.python, self.params, self.source = arch, None, params, arch


@pytest.fixture(scope="module")
def v2():
    return build(_Spec("mobilenet_v2"), SHAPE, 5)


def _app_weights(model):
    """Weights of the application's own layers (not edgekit's scaling or head)."""
    return {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in model.layers
            if layer.weights and layer.name not in ("scale_to_minus_one_to_one", "output")}


@pytest.mark.parametrize("arch, low, high", [
    ("mobilenet_v2", 400_000, 430_000),  # alpha 0.35; its last conv keeps 1280 channels
    ("mobilenet_v3_small", 930_000, 950_000),
    ("efficientnet_b0", 4_000_000, 4_100_000),
])
def test_application_builds_flat_with_zoo_batch_norm(arch, low, high, tmp_path):
    import tf_keras as keras

    from edgekit.models.safety import check_model_file

    model = build(_Spec(arch), SHAPE, 7)
    assert arch in ZOO and set(describe(arch)["params"]) >= {"input_size", "dropout", "weights"}
    assert low <= model.count_params() <= high, model.count_params()
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)  # tfmot needs a flat model
    assert not any("/" in layer.name for layer in model.layers)  # MobileNetV3's a/b/Conv: see applications._build
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.momentum == 0.9 for layer in norms)
    y = np.asarray(model(np.random.default_rng(0).uniform(size=(2, *SHAPE)).astype(np.float32), training=False))
    assert y.shape == (2, 7)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    # Safe mode reads the saved config; MobileNetV3's hard-swish is TFOpLambda layers (plain
    # math ops), which it allows.
    model.save(tmp_path / "model.keras")
    check_model_file(tmp_path / "model.keras")
    if arch == "efficientnet_b0":  # Rescaling and Normalization folded: tfmot can prune it
        assert not any(isinstance(layer, (keras.layers.Rescaling, keras.layers.Normalization)) for layer in model.layers)


def test_unit_range_images_are_scaled_inside_the_model(v2):
    import tf_keras as keras

    scale = keras.Model(v2.inputs, v2.get_layer("scale_to_minus_one_to_one").output)
    x = np.stack([np.zeros(SHAPE), np.ones(SHAPE), np.full(SHAPE, 0.25)]).astype(np.float32)
    np.testing.assert_allclose(np.asarray(scale(x))[:, 0, 0, 0], [-1.0, 1.0, -0.5], atol=1e-6)


def test_input_size_resizes_inside_and_grey_data_works_without_weights():
    model = build(_Spec("mobilenet_v2", input_size=40), (16, 16, 1), 3, task="regression")
    assert tuple(model.inputs[0].shape[1:]) == (16, 16, 1)
    assert tuple(model.get_layer("resize").output.shape[1:3]) == (40, 40)
    assert model.layers[-1].get_config()["activation"] == "linear"
    with pytest.raises(ModelError, match=r"at least 32x32, the data is 16x16: set input_size: 32"):
        build(_Spec("mobilenet_v2"), (16, 16, 1), 3)
    with pytest.raises(ModelError, match=r"input_size: expected null or an integer from 32"):
        build(_Spec("mobilenet_v2", input_size=8), SHAPE, 3)


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """Keras weights files made offline, as Keras' own ImageNet files are laid out."""
    import tf_keras as keras

    folder = tmp_path_factory.mktemp("weights")
    apps = keras.applications
    files = {}
    for name, make in {
        "notop": lambda: apps.MobileNetV2(input_shape=SHAPE, alpha=0.35, include_top=False, weights=None),
        "top": lambda: apps.MobileNetV2(input_shape=SHAPE, alpha=0.35, include_top=True, weights=None, classes=12),
        "alpha05": lambda: apps.MobileNetV2(input_shape=SHAPE, alpha=0.5, include_top=False, weights=None),
        "v3": lambda: apps.MobileNetV3Small(input_shape=SHAPE, include_top=False, weights=None, minimalistic=True),
    }.items():
        model = make()
        files[name] = (folder / f"{name}.h5", model)
        model.save_weights(files[name][0])
    (folder / "text.h5").write_text("not a weights file\n")
    return folder, files


@pytest.mark.parametrize("which", ["notop", "top"])
def test_weights_file_loads_exactly_with_or_without_top(weight_files, which):
    _, files = weight_files
    path, source = files[which]
    model = build(_Spec("mobilenet_v2", weights=str(path)), SHAPE, 5)
    loaded = _app_weights(model)
    expected = {layer.name: layer.get_weights() for layer in source.layers if layer.weights and layer.name != "predictions"}
    assert loaded.keys() == expected.keys() and len(loaded) > 50
    for name, arrays in expected.items():
        for got, want in zip(loaded[name], arrays):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("which, shape, message", [
    ("alpha05", SHAPE, (r"alpha05.h5 does not fit mobilenet_v2: layer \w+ has weights of shape .*"
                        r"expected Keras' mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5")),
    ("v3", SHAPE, r"v3.h5 does not fit mobilenet_v2: .*another architecture\?"),
    ("notop", (32, 32, 1), r"takes 3-channel images and the data has 1; ImageNet weights need RGB images"),
    ("text", SHAPE, r"text.h5 is not an HDF5 \(.h5\) weights file"),
    ("missing", SHAPE, r"file not found: .*missing.h5; mobilenet_v2 expects Keras' mobilenet_v2_weights_"),
])
def test_weights_file_that_does_not_fit_is_one_line(weight_files, which, shape, message):
    folder, _ = weight_files
    with pytest.raises(ModelError, match=message) as info:
        build(_Spec("mobilenet_v2", weights=str(folder / f"{which}.h5")), shape, 5)
    assert "\n" not in str(info.value)


def test_imagenet_is_refused_offline_with_the_url():
    with pytest.raises(ModelError, match=r"imagenet would download; download https://.*efficientnetb0_notop.h5 once"):
        build(_Spec("efficientnet_b0", weights="imagenet"), SHAPE, 2)


def test_saved_model_reloads_in_a_stage_with_the_same_outputs(v2, tmp_path):
    from edgekit.train.stage import load_stage_model

    v2.save(tmp_path / "model.keras")
    x = np.random.default_rng(1).uniform(size=(2, *SHAPE)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(load_stage_model(tmp_path / "model.keras")(x)), np.asarray(v2(x)), atol=1e-5)


def test_mobilenet_v2_takes_tfmot_pruning_and_qat_wrappers(v2):
    import tensorflow_model_optimization as tfmot

    from edgekit.compress._fit import copy_model

    pruned = tfmot.sparsity.keras.prune_low_magnitude(copy_model(v2))
    qat = tfmot.quantization.keras.quantize_apply(tfmot.quantization.keras.quantize_annotate_model(copy_model(v2)))
    x = np.random.default_rng(2).uniform(size=(2, *SHAPE)).astype(np.float32)
    assert np.asarray(pruned(x)).shape == np.asarray(qat(x)).shape == (2, 5)


def test_relative_weights_path_resolves_against_the_recipe(tmp_path):
    from edgekit.recipe.schema import load_recipe

    (tmp_path / "recipe.yaml").write_text(
        "name: w\ndata: {source: gratings32}\nmodel: {arch: mobilenet_v2, params: {weights: w/net.h5}}\n"
        "export: {formats: [tflite]}\n"
    )
    assert load_recipe(tmp_path / "recipe.yaml").model.params["weights"] == str((tmp_path / "w" / "net.h5").resolve())


def test_gratings_generator_keeps_gratings32_and_makes_96px():
    from edgekit.data import images

    small, names = images.gratings(n=20, size=96, seed=1)
    assert small["x"].shape == (20, 96, 96, 3) and small["x"].dtype == np.float32 and len(names) == 10
    assert 0 <= small["x"].min() and small["x"].max() <= 1
    x32 = images.gratings32(None)[0]["x"]  # the same 3000 images as before the generator took a size
    assert hashlib.sha256(x32.tobytes()).hexdigest() == "fb2fa6e40fe03035989181a3324bb9e3b3057a6e5375544671a11acf02cb5362"


def test_efficientnet_imagenet_statistics_fold_into_the_model_exactly(tmp_path):
    """A file holding ImageNet's input statistics: the model takes [0, 1] images and computes
    what Keras' EfficientNet does for ImageNet weights on [0, 255] (with its extra 1/sqrt(std))."""
    import tf_keras as keras

    keras_net = keras.applications.EfficientNetB0(input_shape=SHAPE, include_top=False, weights=None)
    norm = next(layer for layer in keras_net.layers if isinstance(layer, keras.layers.Normalization))
    std = np.array([0.229, 0.224, 0.225])
    norm.adapt_mean.assign(np.reshape([0.485, 0.456, 0.406], norm.adapt_mean.shape))
    norm.adapt_variance.assign(np.reshape(std**2, norm.adapt_variance.shape))
    keras_net.save_weights(tmp_path / "efficientnetb0_notop.h5")
    model = build(_Spec("efficientnet_b0", weights=str(tmp_path / "efficientnetb0_notop.h5")), SHAPE, 3)
    assert not any(isinstance(layer, (keras.layers.Rescaling, keras.layers.Normalization)) for layer in model.layers)
    norm.adapt_variance.assign(np.reshape(std**3, norm.adapt_variance.shape))  # Keras' extra division by sqrt(std)
    norm.finalize_state()
    x = np.random.default_rng(3).uniform(size=(2, *SHAPE)).astype(np.float32)
    ours = keras.Model(model.inputs, model.get_layer("stem_activation").output)(x)
    theirs = keras.Model(keras_net.inputs, keras_net.get_layer("stem_activation").output)(x * 255)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=1e-4)
