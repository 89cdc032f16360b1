"""`edgekit init`: a starter recipe that validates, from a model file and its data or from a zoo
model and a dataset; never over an existing file without --force."""

from __future__ import annotations

import numpy as np
import yaml
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.recipe.schema import load_recipe


def test_init_from_a_model_file_reads_it_and_validates(tiny_model, digits, tmp_path):
    model = tmp_path / "my.keras"
    tiny_model.save(model)
    x, y = digits
    np.savez(tmp_path / "my.npz", x=x, y=y)
    out = tmp_path / "recipes" / "my.yaml"
    result = CliRunner().invoke(cli, ["init", "--model", str(model), "--data", str(tmp_path / "my.npz"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "input [8, 8, 1] (float32), output [10] (width 10)" in text and "metric accuracy" in text
    doc = yaml.safe_load(text)
    assert doc["task"] == "classification" and doc["model"] == {"file": "../my.keras"}
    assert doc["data"] == {"source": "npz", "path": "../my.npz"} and doc["quantize"]["precisions"] == ["fp32", "int8"]
    recipe = load_recipe(out)  # paths relative to the recipe's folder
    assert recipe.model.file == model.resolve() and "tflite" in recipe.export.formats


def test_init_never_overwrites_without_force(tmp_path):
    out = tmp_path / "r.yaml"
    out.write_text("mine\n")
    args = ["init", "--arch", "cnn", "--dataset", "digits", "--out", str(out)]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2 and "--force" in refused.output and out.read_text() == "mine\n"
    forced = CliRunner().invoke(cli, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    recipe = load_recipe(out)
    assert recipe.model.arch == "cnn" and recipe.data.source == "digits" and recipe.task == "classification"


def test_init_from_the_zoo_takes_the_datasets_task(tmp_path):
    result = CliRunner().invoke(cli, ["init", "--arch", "mlp", "--dataset", "diabetes", "--out", str(tmp_path / "d.yaml")])
    assert result.exit_code == 0, result.output
    assert load_recipe(tmp_path / "d.yaml").task == "regression"


def test_init_bad_input_is_one_line(tmp_path):
    for args, fragment in ((["--arch", "mlpp", "--dataset", "wine"], "did you mean"),
                           (["--arch", "unet", "--dataset", "wine"], "classification dataset"),
                           (["--arch", "mlp", "--dataset", "nope"], "unknown builtin dataset"),
                           (["--arch", "mlp"], "--dataset"),
                           ([], "either --model")):
        result = CliRunner().invoke(cli, ["init", *args, "--out", str(tmp_path / "x.yaml")])
        assert result.exit_code == 2, (args, result.output)
        assert fragment in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.yaml").exists()


def test_init_reads_a_folder_of_images(tmp_path):
    """A Keras 3 model that rescales pixels itself and a folder of PNGs, one subfolder per class
    (the case of in-model preprocessing): init wrote nothing for a folder ("not found")."""
    import keras
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / "pics" / name).mkdir(parents=True)
        for i in range(6):  # 20x20: init reads them at the model's 12x12, as a build does
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "pics" / name / f"{i}.png")
    inputs = keras.Input((12, 12, 3))
    hidden = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(hidden)).save(tmp_path / "pics.keras")
    out = tmp_path / "pics.yaml"
    result = CliRunner().invoke(cli, ["init", "--model", str(tmp_path / "pics.keras"), "--data", str(tmp_path / "pics"),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(out.read_text())
    assert doc["task"] == "classification" and doc["data"] == {"source": "images", "path": "pics"}
    assert "input [12, 12, 3] (float32), output [2]" in out.read_text()
    assert load_recipe(out).data.image_size == (12, 12)
    unlabelled = CliRunner().invoke(cli, ["init", "--model", str(tmp_path / "pics.keras"), "--data",
                                          str(tmp_path / "pics" / "cat"), "--out", str(tmp_path / "cat.yaml")])
    assert unlabelled.exit_code == 0 and yaml.safe_load((tmp_path / "cat.yaml").read_text())["task"] == "fidelity"
    missing = CliRunner().invoke(cli, ["init", "--model", str(tmp_path / "pics.keras"), "--data", str(tmp_path / "nope"),
                                       "--out", str(tmp_path / "n.yaml")])
    assert missing.exit_code == 2 and "or its folder of images" in missing.output
