"""The DCGAN generator: its builder, the latent inputs it takes, its own adversarial training
(the zoo's "a model that trains itself" seam) and one tiny build scored with task fidelity."""

from __future__ import annotations

import json
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

from edgekit import models
from edgekit.errors import ModelError


def test_in_the_zoo_for_fidelity_only():
    assert models.MODEL_TASKS["dcgan"] == ("fidelity",)
    assert models.models_for("fidelity") == ["dcgan"]
    assert models.builder_params("dcgan") == {"latent": 32, "filters": (64, 32)}


def test_generator_shapes_and_range():
    spec = SimpleNamespace(arch="dcgan", python=None, params={"latent": 16}, source="dcgan")
    gen = models.build(spec, (8, 8, 1), 0, task="fidelity")
    assert tuple(gen.inputs[0].shape) == (None, 16) and tuple(gen.outputs[0].shape) == (None, 8, 8, 1)
    out = gen(np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32), training=False).numpy()
    assert out.min() >= 0 and out.max() <= 1  # sigmoid images
    assert tuple(models.build(spec, (28, 28, 1), 0, task="fidelity").outputs[0].shape) == (None, 28, 28, 1)
    with pytest.raises(ModelError, match="divisible by 4"):
        models.build(spec, (10, 10, 1), 0, task="fidelity")


def _data(n=96):
    from edgekit.data import Dataset

    images = np.random.default_rng(0).uniform(size=(n, 8, 8, 1)).astype(np.float32)
    empty = np.zeros((0, 8, 8, 1), np.float32)
    return Dataset(x_train=images, y_train=np.zeros((n, 0)), x_val=empty, y_val=np.zeros((0, 0)),
                   x_test=images[:20], y_test=np.zeros((20, 0)), x_calib=images[:10], class_names=[], task="fidelity",
                   info={})


def _recipe(**train):
    return SimpleNamespace(seed=4, model=SimpleNamespace(arch="dcgan", params={"latent": 8}),
                           train=SimpleNamespace(**{"epochs": 1, "batch_size": 32, "learning_rate": 1e-3, **train}))


def test_model_inputs_are_seeded_latents_and_images_become_the_target():
    from edgekit.train.fit import model_inputs, self_trainer

    recipe = _recipe()
    assert self_trainer(recipe) is models.dcgan
    assert self_trainer(SimpleNamespace(model=SimpleNamespace(arch="lenet"))) is None
    data = _data()
    images = data.x_train
    assert model_inputs(recipe, data) is data  # in place
    assert data.x_test.shape == (20, 8) and data.x_calib.shape == (10, 8) and data.x_val.shape == (0, 8)
    assert data.y_train is images and data.input_shape == (8,) and data.info["inputs"]["kind"] == "latent"
    first = data.x_test.copy()
    model_inputs(recipe, data)  # once only: a second call changes nothing
    np.testing.assert_array_equal(data.x_test, first)
    np.testing.assert_array_equal(model_inputs(recipe, _data()).x_test, first)  # same seed, same latents
    other = model_inputs(SimpleNamespace(**{**vars(recipe), "seed": 5}), _data())
    assert not np.allclose(other.x_test, first)


def test_fit_trains_the_generator_against_a_discriminator():
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    gen = models.dcgan.build((8, 8, 1), 0, latent=8, filters=(16, 8))
    before = [w.copy() for w in gen.get_weights()]
    lines = []
    history = models.dcgan.fit(gen, _data(), _recipe(epochs=2), log=lines.append)
    assert set(history) == {"d_loss", "g_loss", "d_real"} and all(len(v) == 2 for v in history.values())
    assert all(np.isfinite(v).all() for v in history.values())
    assert any(not np.allclose(a, b) for a, b in zip(before, gen.get_weights()))
    assert any(line.startswith("  epoch 2/2: d_loss") for line in lines)


DCGAN_RECIPE = """
name: gan
task: fidelity
data: {source: digits, test_fraction: 0.05, val_fraction: 0.02}
model: {arch: dcgan, params: {latent: 8, filters: [16, 8]}}
train: {epochs: 1, batch_size: 128}
quantize: {calibration_samples: 32}
export: {formats: [tflite]}
benchmark: {warmup: 1, runs: 5, rounds: 1, inputs: 4, profile: false}
check: {defaults: {min_metric: 20}}
"""


def test_dcgan_build_deploys_the_generator_at_fp32_and_int8(tmp_path):
    from click.testing import CliRunner

    from edgekit.cli import cli

    recipe = tmp_path / "gan.yaml"
    recipe.write_text(textwrap.dedent(DCGAN_RECIPE))
    runner = CliRunner(env={"EDGEKIT_CACHE_DIR": str(tmp_path / "cache")})
    result = runner.invoke(cli, ["build", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "dcgan takes latent inputs of size 8" in result.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    rows = {row["id"]: row for row in results["rows"]}
    assert results["model"]["input_shape"] == [8]  # the generator alone is deployed
    assert [rows[i]["status"] for i in ("keras-fp32@cpu", "tflite-fp32@cpu", "tflite-int8@cpu")] == ["ok"] * 3
    assert rows["tflite-fp32@cpu"]["metrics"]["snr_db"] > 90
    assert 20 < rows["tflite-int8@cpu"]["metrics"]["snr_db"] < 90
    assert "top1_agreement" not in rows["tflite-int8@cpu"]["metrics"]  # images, not class scores
    checked = runner.invoke(cli, ["check", str(tmp_path / "run")])
    assert checked.exit_code == 0, checked.output
    # A rebuild takes the model and every row from the cache and draws the same latent inputs.
    again = runner.invoke(cli, ["build", str(recipe), "--out", str(tmp_path / "again")])
    assert again.exit_code == 0 and "trained model reused from the cache" in again.output
    assert "dcgan takes latent inputs of size 8" in again.output
    cached = {row["id"]: row for row in json.loads((tmp_path / "again" / "results.json").read_text())["rows"]}
    assert {i: r["metrics"] for i, r in cached.items()} == {i: r["metrics"] for i, r in rows.items()}
