"""Keras Applications (MobileNetV2, MobileNetV3-Small, EfficientNet-B0) as zoo models.

Built with ``tf_keras.applications`` (Keras 2), flat (no nested model), so
tensorflow-model-optimization can work on them: it prunes all three (MobileNetV3's hard-swish
op layers, which it cannot wrap, stay as they are) and QAT-trains MobileNetV2 and the minimalistic MobileNetV3 (see each
builder for what it refuses). Each
takes edgekit's images as they are, float in [0, 1]: the input scaling the network (and its
ImageNet weights) expects is a layer inside the model, so every exported artifact takes
[0, 1] images too. ``include_top=False`` plus edgekit's own head (global average pooling,
dropout, a Dense layer for any number of classes or regression targets).

``weights`` is ``none`` (random init, offline, the default) or the path of a Keras weights
file (``.h5``) downloaded once: ImageNet weights for the same architecture and width, with or
without the ImageNet classifier (the ``_no_top`` files; a classifier in the file is skipped).
A file that does not fit gives a one-line ModelError naming the file the model expects.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import ModelError
from edgekit.models._common import head, require

TASKS = ("classification", "regression")

_BASE_URL = "https://storage.googleapis.com/"
# The smallest input the applications accept (Keras checks it too, less clearly).
_MIN_SIZE = 32
# BatchNormalization momentum of the zoo (see _common.batch_norm): Keras' 0.99 leaves short
# trainings at chance in inference mode, which is what every exported format runs.
_MOMENTUM = 0.9
# Layers of the ImageNet classifier ("top"), skipped when a weights file holds them.
_TOP_LAYERS = {"mobilenet_v2": {"predictions"}, "mobilenet_v3_small": {"Conv_2", "Logits"},
               "efficientnet_b0": {"predictions"}}
# EfficientNet's ImageNet input statistics (tf_keras.applications.efficientnet).
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
_IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def mobilenet_v2(input_shape, num_classes, task="classification", alpha=0.35, input_size=None, dropout=0.2, weights="none"):
    """MobileNetV2 (Sandler et al. 2018) from tf_keras.applications; input [0, 1], scaled to [-1, 1] inside.

    Prunable and QAT-trainable (the [-1, 1] scaling is a fixed 1x1 depthwise convolution,
    which tensorflow-model-optimization can quantize; a resize from ``input_size`` cannot).

    Args:
        input_shape: (H, W, C), at least 32x32 (or set input_size); ImageNet weights need C = 3.
        num_classes: classes (softmax) or regression targets (linear).
        task: classification or regression.
        alpha: width multiplier; ImageNet weights exist for 0.35, 0.5, 0.75, 1.0, 1.3, 1.4.
        input_size: resize the images to input_size x input_size inside the model (a Resizing
            layer); null: the data's own size.
        dropout: dropout rate before the classifier.
        weights: none (random init) or the path of a Keras weights .h5 for this alpha, e.g.
            mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5 (any of its
            sizes fits; relative to the recipe's folder).
    """
    import tf_keras as keras

    _check_alpha(alpha)
    expected = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{_keras_size(input_shape, input_size)}_no_top.h5"
    return _build("mobilenet_v2", keras.applications.MobileNetV2, {"alpha": float(alpha)}, "minus_one_to_one",
                  input_shape, num_classes, task, input_size, dropout, weights,
                  expected, f"{_BASE_URL}tensorflow/keras-applications/mobilenet_v2/{expected}")


def mobilenet_v3_small(input_shape, num_classes, task="classification", alpha=1.0, minimalistic=False, input_size=None,
                       dropout=0.2, weights="none"):
    """MobileNetV3-Small (Howard et al. 2019) from tf_keras.applications; input [0, 1], scaled to [-1, 1] inside.

    Not QAT-trainable: its hard-swish is TensorFlow-op layers (x + 3, x * 1/6), which
    tensorflow-model-optimization 0.8 can neither wrap nor quantize, and its squeeze-excite a
    Multiply, which it cannot quantize (int8 PTQ works; pruning wraps the other layers);
    ``minimalistic: true`` has neither, and tfmot prunes and quantizes it.

    Args:
        input_shape: (H, W, C), at least 32x32 (or set input_size); ImageNet weights need C = 3.
        num_classes: classes (softmax) or regression targets (linear).
        task: classification or regression.
        alpha: width multiplier; ImageNet weights exist for 0.75 and 1.0 (minimalistic: 1.0).
        minimalistic: the variant without hard-swish, squeeze-excite and 5x5 kernels.
        input_size: resize the images to input_size x input_size inside the model (a Resizing
            layer); null: the data's own size.
        dropout: dropout rate before the classifier.
        weights: none (random init) or the path of a Keras weights .h5 for this alpha, e.g.
            weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5 (relative to the recipe's folder).
    """
    import tf_keras as keras

    _check_alpha(alpha)
    kind = f"small{'_minimalistic' if minimalistic else ''}_224_{float(alpha)}_float"
    expected = f"weights_mobilenet_v3_{kind}_no_top_v2.h5"
    return _build("mobilenet_v3_small", keras.applications.MobileNetV3Small,
                  {"alpha": float(alpha), "minimalistic": bool(minimalistic), "include_preprocessing": False},
                  "minus_one_to_one", input_shape, num_classes, task, input_size, dropout, weights,
                  expected, f"{_BASE_URL}tensorflow/keras-applications/mobilenet_v3/{expected}")


def efficientnet_b0(input_shape, num_classes, task="classification", input_size=None, dropout=0.2, weights="none"):
    """EfficientNet-B0 (Tan and Le 2019) from tf_keras.applications; input [0, 1], normalised inside.

    Keras' Rescaling(1/255) and Normalization input layers become one frozen 1x1 depthwise
    convolution (x - mean) and the stem convolution (/ std): ImageNet's statistics with the
    weights, else 0 and 1.
    Prunable, not QAT-trainable: tensorflow-model-optimization 0.8 cannot quantize its
    squeeze-excite Multiply (int8 PTQ works).

    Args:
        input_shape: (H, W, C), at least 32x32 (or set input_size); ImageNet weights need C = 3.
        num_classes: classes (softmax) or regression targets (linear).
        task: classification or regression.
        input_size: resize the images to input_size x input_size inside the model (a Resizing
            layer); null: the data's own size.
        dropout: dropout rate before the classifier.
        weights: none (random init) or the path of Keras' efficientnetb0_notop.h5 (or
            efficientnetb0.h5; relative to the recipe's folder).
    """
    import tf_keras as keras

    expected = "efficientnetb0_notop.h5"
    return _build("efficientnet_b0", keras.applications.EfficientNetB0, {}, "fold_normalization",
                  input_shape, num_classes, task, input_size, dropout, weights,
                  expected, f"{_BASE_URL}keras-applications/{expected}")


def _build(arch, application, kwargs, scaling, input_shape, num_classes, task, input_size, dropout, weights, expected, url):
    """The shared body: input -> [resize] -> scaling -> application (no top) -> edgekit's head."""
    import tf_keras as keras

    layers = keras.layers
    require(len(input_shape) == 3, f"{arch} needs images of shape (H, W, C), received {list(input_shape)}")
    require(dropout is not None and 0 <= float(dropout) < 1, f"dropout: expected a rate in [0, 1), received {dropout!r}")
    path = _weights_path(weights, arch, expected, url)
    if input_size is not None:
        require(isinstance(input_size, int) and not isinstance(input_size, bool) and _MIN_SIZE <= input_size <= 1024,
                f"input_size: expected null or an integer from {_MIN_SIZE} to 1024, received {input_size!r}")
        size = (input_size, input_size)
    else:
        size = tuple(input_shape[:2])
        require(min(size) >= _MIN_SIZE, f"{arch} needs images of at least {_MIN_SIZE}x{_MIN_SIZE}, the data is "
                f"{size[0]}x{size[1]}: set input_size: {_MIN_SIZE} (or more) to resize inside the model")
    channels = int(input_shape[2])
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    if input_size is not None:
        x = layers.Resizing(*size, name="resize")(x)
    if scaling == "minus_one_to_one":
        x = _scale_to_minus_one_to_one(x)
    own = {layer.name for layer in keras.Model(inputs, x).layers}
    base = application(input_tensor=x, input_shape=(*size, channels), include_top=False, weights=None, **kwargs)
    for layer in base.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = _MOMENTUM
    if path is not None:
        _load_weights([layer for layer in base.layers if layer.name not in own], path, arch, expected)
    for layer in base.layers:
        # MobileNetV3 names layers like expanded_conv/squeeze_excite/Conv: in the exported graphs
        # that reads as nested scopes, and the OpenVINO int8 route then gave nine ops the name of
        # the top-level layer Conv_1 (NNCF refuses duplicate names). One flat name per layer.
        if "/" in layer.name:
            layer._name = layer.name.replace("/", "_")
    x = layers.GlobalAveragePooling2D(name="pool")(base.output)
    if dropout:
        x = layers.Dropout(float(dropout), name="dropout")(x)
    model = keras.Model(inputs, head(x, num_classes, task), name=arch)
    return _fold_normalization(model) if scaling == "fold_normalization" else model


def _fold_normalization(model):
    """EfficientNet's input layers, Rescaling(1/255) then Normalization, folded: a frozen 1x1
    depthwise convolution subtracts the mean from [0, 1] images, and the stem convolution's
    kernel takes the division by the standard deviation (exact: its zero padding is the
    mean either way). The depthwise kernel is all ones, so magnitude pruning keeps it whole.

    Why: tfmot 0.8 cannot prune-wrap either layer, and onnxruntime's int8 route turned the
    Normalization's statistics into graph inputs it then missed ("Required inputs
    ['.../normalization/sub/y:0', ...] are missing"). The Rescaling's place is kept by a linear
    Activation (the converters drop it), so every other layer keeps its name and weights.
    """
    import tf_keras as keras

    rescale = next(layer for layer in model.layers if isinstance(layer, keras.layers.Rescaling))
    norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
    # the variables themselves (norm.mean and norm.variance are tensors broadcast from them)
    mean = np.ravel(norm.adapt_mean.numpy()).astype(np.float32)
    std = np.maximum(np.sqrt(np.ravel(norm.adapt_variance.numpy())), keras.backend.epsilon()).astype(np.float32)

    def clone(layer):
        if layer is rescale:
            return keras.layers.Activation("linear", name="input_unit_range")
        if layer is norm:
            return keras.layers.DepthwiseConv2D(1, use_bias=True, trainable=False, name="normalization")
        return layer.__class__.from_config(layer.get_config())

    folded = keras.models.clone_model(model, clone_function=clone)
    for layer in folded.layers:
        if layer.name == "normalization":
            layer.set_weights([np.ones((1, 1, mean.size, 1), np.float32), -mean])
        elif layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    stem = folded.get_layer("stem_conv")  # the first convolution, right after the normalization
    stem.kernel.assign(stem.kernel.numpy() / std[None, None, :, None])
    return folded


def _scale_to_minus_one_to_one(x):
    """2x - 1 as a frozen 1x1 depthwise convolution: unlike a Rescaling layer, tfmot can
    quantize it (QAT), and pruning keeps all of its equal weights (magnitude ties stay)."""
    import tf_keras as keras

    return keras.layers.DepthwiseConv2D(
        1, use_bias=True, trainable=False, name="scale_to_minus_one_to_one",
        depthwise_initializer=keras.initializers.Constant(2.0), bias_initializer=keras.initializers.Constant(-1.0),
    )(x)


def _check_alpha(alpha) -> None:
    require(isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and 0 < float(alpha) <= 2,
            f"alpha: expected a width multiplier in (0, 2], received {alpha!r}")


def _keras_size(input_shape, input_size) -> int:
    """The ImageNet size in Keras' MobileNetV2 file names closest to the model's input (names only)."""
    size = input_size or (input_shape[0] if len(input_shape) == 3 else 224)
    return min((96, 128, 160, 192, 224), key=lambda s: abs(s - int(size or 224)))


def _weights_path(weights, arch: str, expected: str, url: str) -> Path | None:
    """None for random init, else the weights file (checked to exist)."""
    if weights is None or (isinstance(weights, str) and weights.lower() == "none"):
        return None
    if not isinstance(weights, (str, Path)):
        raise ModelError(f"model.params.weights: expected none or the path of a weights .h5 file, received {weights!r}")
    if str(weights).lower() == "imagenet":
        raise ModelError(f"model.params.weights: imagenet would download; download {url} once and set "
                         f"weights: PATH/{expected} (edgekit runs offline)")
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ModelError(f"model.params.weights: file not found: {path}; {arch} expects Keras' {expected} "
                         f"(from {url}); relative paths start at the recipe's folder")
    return path


def _norm(name: str) -> str:
    """A layer name without the _N suffix Keras adds to auto-named layers (normalization_3)."""
    return re.sub(r"_\d+$", "", name)


def read_weights_file(path: Path) -> list[tuple[str, list[np.ndarray]]]:
    """The (layer name, weight arrays) of a Keras HDF5 weights or model file, in saved order.

    Raises:
        ModelError: the file is not HDF5 or holds no Keras weights.
    """
    import h5py

    from edgekit.models.file_checks import check_file

    # its type from its first bytes, and nothing in it that points at another file
    if check_file(path, "model.params.weights") != "hdf5":
        raise ModelError(f"model.params.weights: {path} is not an HDF5 (.h5) weights file; give the Keras .h5 file itself")
    with h5py.File(path, "r") as f:
        group = f.get("model_weights", f)  # a whole-model .h5 keeps them there
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("layer_names", [])]
        layers = []
        for name in names:
            weight_names = [w.decode() if isinstance(w, bytes) else str(w) for w in group[name].attrs.get("weight_names", [])]
            if weight_names:
                layers.append((name, [np.asarray(group[name][w]) for w in weight_names]))
    if not layers:
        raise ModelError(f"model.params.weights: {path} holds no Keras layer weights; is it a file saved by Keras save_weights?")
    return layers


def _load_weights(model_layers, path: Path, arch: str, expected: str) -> None:
    """Set the application's weights from ``path``, in layer order like Keras' own loader,
    after checking every layer's name and shapes (a classifier at the file's end is skipped)."""
    targets = [layer for layer in model_layers if layer.weights]
    saved = read_weights_file(path)
    top = [name for name, _ in saved[len(targets):]]
    misfit = f"model.params.weights: {path.name} does not fit {arch}"
    fix = f"expected Keras' {expected} (or the same without _no_top/_notop)"
    if len(saved) < len(targets) or any(name not in _TOP_LAYERS[arch] for name in top):
        raise ModelError(f"{misfit}: the file holds {len(saved)} layers with weights, the model {len(targets)}"
                         f"{' plus a classifier' if len(saved) > len(targets) else ''}; is it another architecture? {fix}")
    values: list[tuple[Any, np.ndarray]] = []
    for i, (layer, (name, arrays)) in enumerate(zip(targets, saved)):
        variables = layer.trainable_weights + layer.non_trainable_weights  # the order save_weights writes
        if _norm(name) != _norm(layer.name):
            raise ModelError(f"{misfit}: its layer {i + 1} is {name}, the model's is {layer.name}; is it another architecture? {fix}")
        shapes = [tuple(v.shape) for v in variables]
        if [a.shape for a in arrays] != shapes:
            got = [a.shape for a in arrays]
            if i == 0 and len(got) == 1 and len(got[0]) == 4 and got[0][:2] == shapes[0][:2] and got[0][2] != shapes[0][2]:
                raise ModelError(f"{misfit}: its first layer takes {got[0][2]}-channel images and the data has "
                                 f"{shapes[0][2]}; ImageNet weights need RGB images: give 3-channel data or use weights: none")
            raise ModelError(f"{misfit}: layer {layer.name} has weights of shape {got} in the file, the model needs "
                             f"{shapes} (another alpha or variant?); {fix}")
        values += list(zip(variables, arrays))
    for variable, array in values:
        variable.assign(array)
    for layer in targets:
        layer.finalize_state()  # a Normalization derives its mean and variance tensors here, as Keras' loader does
    if arch == "efficientnet_b0":
        _imagenet_normalisation(targets)


def _imagenet_normalisation(layers) -> None:
    """Keras builds EfficientNet for ImageNet weights with an extra division by sqrt(std) after
    its Normalization layer (tensorflow#49930); folded into the variance here (where the file
    holds ImageNet's statistics) instead of a TensorFlow-op layer."""
    norm = next((layer for layer in layers if type(layer).__name__ == "Normalization"), None)
    if norm is None:
        return
    mean, variance = np.ravel(norm.adapt_mean.numpy()), np.ravel(norm.adapt_variance.numpy())
    if mean.shape == (3,) and np.allclose(mean, _IMAGENET_MEAN, atol=1e-3) and np.allclose(variance, _IMAGENET_STD**2, atol=1e-3):
        norm.adapt_variance.assign(np.reshape(variance * _IMAGENET_STD, norm.adapt_variance.shape))
