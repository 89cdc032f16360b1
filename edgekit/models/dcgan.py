"""A DCGAN-style generator (latent vector -> small image), trained adversarially with its own
small discriminator: the zoo's generative family, scored label-free (task fidelity).

This module is the zoo's example of a model that trains itself (``edgekit.train.fit`` looks for
the two functions below on a zoo builder's module):

- ``model_inputs(data, params, seed)``: what the deployed model takes. The data stage's images
  are the training target (kept as the splits' ``y``); every split's ``x`` becomes latent
  vectors drawn from N(0, 1) with the recipe seed, so the test, calibration and benchmark
  inputs of every artifact are the same fixed latent samples.
- ``fit(model, data, recipe, log)``: the adversarial training, on the images; only the
  generator is returned and deployed (the discriminator lives in this function).
"""

from __future__ import annotations

import math

import numpy as np

from edgekit.models._common import as_tuple, batch_norm, require

TASKS = ("fidelity",)
#: the latent draws are seeded by (recipe seed, this): independent of the split and calibration draws
_LATENT_STREAM = 5


def build(input_shape, num_classes, task="fidelity", latent=32, filters=(64, 32)):
    """A generator: latent vector -> Dense -> reshape -> strided Conv2DTranspose blocks -> sigmoid image.

    Args:
        input_shape: the shape of the images it generates, (H, W, C) or (H, W): the data's
            sample shape; H and W divisible by 2 ** len(filters).
        num_classes: unused (the output is an image).
        task: fidelity.
        latent: size of the latent vector, the deployed model's input.
        filters: channels of the Dense layer's reshaped map, then of each further block; the
            model has len(filters) stride-2 transposed convolutions, each doubling H and W, the
            last one making the image's channels.
    """
    import tf_keras as keras

    require(len(input_shape) in (2, 3), f"dcgan generates images of shape (H, W, C), received {list(input_shape)}")
    require(int(latent) == latent and latent > 0, f"latent: expected a positive integer, received {latent!r}")
    filters = as_tuple(filters, "filters")
    height, width = int(input_shape[0]), int(input_shape[1])
    channels = int(input_shape[2]) if len(input_shape) == 3 else 1
    scale = 2 ** len(filters)
    require(height % scale == 0 and width % scale == 0,
            f"dcgan with {len(filters)} upsampling blocks (filters) needs H and W divisible by {scale}, "
            f"received {list(input_shape)}")
    layers = keras.layers
    inputs = keras.Input(shape=(int(latent),), name="latent")
    x = layers.Dense((height // scale) * (width // scale) * filters[0], use_bias=False)(inputs)
    x = layers.ReLU()(batch_norm()(x))
    x = layers.Reshape((height // scale, width // scale, filters[0]))(x)
    for n in filters[1:]:
        x = layers.Conv2DTranspose(n, 4, strides=2, padding="same", use_bias=False)(x)
        x = layers.ReLU()(batch_norm()(x))
    x = layers.Conv2DTranspose(channels, 4, strides=2, padding="same", activation="sigmoid", name="image")(x)
    outputs = x if len(input_shape) == 3 else layers.Reshape((height, width))(x)
    return keras.Model(inputs, outputs, name="dcgan_generator")


def discriminator(image_shape, filters=(32, 64)):
    """A small CNN scoring an image real (positive logit) or generated; never deployed."""
    import tf_keras as keras

    layers = keras.layers
    inputs = keras.Input(shape=image_shape)
    x = inputs if len(image_shape) == 3 else layers.Reshape((*image_shape, 1))(inputs)
    for n in filters:
        x = layers.Conv2D(n, 3, strides=2, padding="same")(x)
        x = layers.LeakyReLU(0.2)(x)
    x = layers.Dropout(0.3)(layers.Flatten()(x))
    return keras.Model(inputs, layers.Dense(1)(x), name="dcgan_discriminator")


def latent_size(params: dict) -> int:
    from edgekit.models import builder_params

    return int(params.get("latent", builder_params("dcgan")["latent"]))


def model_inputs(data, params: dict, seed: int):
    """The dataset the generator's artifacts are built and scored on, in place: each split's
    images move to its ``y`` (the training target) and its ``x`` becomes latent vectors drawn
    with ``seed`` (x_calib: as many as the calibration subset; the benchmark takes the first
    test ones). The images' normalization, if any, shaped only the training target: the
    artifacts take latent vectors as they are. Returns ``data``."""
    latent = latent_size(params)
    rng = np.random.default_rng([seed, _LATENT_STREAM])

    def draw(n: int) -> np.ndarray:
        return rng.standard_normal((n, latent)).astype(np.float32)

    data.y_train, data.y_val, data.y_test = data.x_train, data.x_val, data.x_test
    data.x_train, data.x_val, data.x_test, data.x_calib = (draw(len(a)) for a in (data.x_train, data.x_val, data.x_test,
                                                                                    data.x_calib))
    image_shape = list(data.y_train.shape[1:])
    data.normalization, data.embedded = None, False
    data.info["inputs"] = {"kind": "latent", "size": latent, "distribution": "standard normal",
                           "seed": [seed, _LATENT_STREAM], "images": image_shape,
                           "note": "the images are the generator's training target; every artifact takes latent vectors"}
    data.info["input_shape"] = [latent]
    return data


def fit(model, data, recipe, log=print) -> dict[str, list[float]]:
    """Train ``model`` (the generator) against a fresh discriminator on ``data.x_train``'s images.

    The standard DCGAN recipe: Adam (the recipe's learning rate, beta_1 0.5), binary
    cross-entropy on logits, one discriminator and one generator step per batch, the
    generator's latent noise drawn fresh every step from the recipe seed. The images are
    scaled to the sigmoid's [0, 1] by the training split's min and max. ``train.epochs`` and
    ``train.batch_size`` apply; early stopping does not (a GAN's losses are no sign of quality).

    Returns:
        Per-epoch ``d_loss``, ``g_loss`` and ``d_real`` (the discriminator's mean probability
        that a real image is real).
    """
    import tensorflow as tf
    import tf_keras as keras

    from edgekit.progress import step

    images = np.asarray(data.x_train, np.float32)
    lo, hi = float(images.min()), float(images.max())
    images = (images - lo) / (hi - lo if hi > lo else 1.0)
    image_shape = tuple(images.shape[1:])
    latent = int(model.inputs[0].shape[-1])
    critic = discriminator(image_shape)
    spec = recipe.train
    g_opt = keras.optimizers.Adam(spec.learning_rate, beta_1=0.5)
    d_opt = keras.optimizers.Adam(spec.learning_rate, beta_1=0.5)
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    tf.random.set_seed(recipe.seed)

    @tf.function
    def train_step(real):
        noise = tf.random.normal((tf.shape(real)[0], latent))
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = model(noise, training=True)
            real_logits, fake_logits = critic(real, training=True), critic(fake, training=True)
            d_loss = bce(tf.ones_like(real_logits), real_logits) + bce(tf.zeros_like(fake_logits), fake_logits)
            g_loss = bce(tf.ones_like(fake_logits), fake_logits)
        d_opt.apply_gradients(zip(d_tape.gradient(d_loss, critic.trainable_variables), critic.trainable_variables))
        g_opt.apply_gradients(zip(g_tape.gradient(g_loss, model.trainable_variables), model.trainable_variables))
        return d_loss, g_loss, tf.reduce_mean(tf.sigmoid(real_logits))

    rng = np.random.default_rng(recipe.seed)
    history: dict[str, list[float]] = {"d_loss": [], "g_loss": [], "d_real": []}
    batches = max(1, math.ceil(len(images) / spec.batch_size))
    for epoch in range(spec.epochs):
        order = rng.permutation(len(images))
        sums = np.zeros(3)
        for b in range(batches):
            batch = images[order[b * spec.batch_size:(b + 1) * spec.batch_size]]
            sums += [float(v) for v in train_step(tf.constant(batch))]
        for name, value in zip(history, sums / batches):
            history[name].append(float(value))
        log(f"  epoch {epoch + 1}/{spec.epochs}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in history.items()))
        step(log, "training base", epoch + 1, spec.epochs)
    return history
