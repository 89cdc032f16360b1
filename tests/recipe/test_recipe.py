"""Recipe validation: every problem is one line naming the file, the field, expected and received."""

from __future__ import annotations

import json

import pytest

from edgekit.errors import RecipeError
from edgekit.recipe.schema import Recipe, load_recipe


def test_minimal_recipe_gets_defaults(write_recipe):
    recipe = load_recipe(write_recipe("name: m\nmodel: {arch: mlp}\n"))
    assert recipe.data.source == "digits"
    assert recipe.quantize.precisions == ["fp32", "int8"]
    assert recipe.export.formats == ["tflite", "onnx", "openvino"]
    assert recipe.export.onnx.activation_type == "uint8"
    assert recipe.targets == ["cpu"]
    assert len(recipe.sha256) == 64


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: m\nmodle: {arch: mlp}\n", ['modle: unknown key (did you mean "model"?)']),
        ("name: m\nmodel: {arch: mlp}\ntrain: {epoch: 3}\n", ['train.epoch: unknown key (did you mean "epochs"?)']),
        ("name: m\nmodel: {arch: mlp}\ntrain: {epochs: ten}\n", ["train.epochs: expected a valid integer", "received 'ten'"]),
        ("name: m\nmodel: {arch: mlp}\nquantize: {calibration_samples: -1}\n",
         ["quantize.calibration_samples: expected greater than 0, received -1"]),
        ("name: m\nmodel: {arch: mlp}\ndata: {source: digitz}\n", ['data.source: unknown dataset "digitz" (did you mean "digits"?)']),
        ("name: m\nmodel: {arch: cnnn}\n", ['model.arch: unknown model "cnnn" (did you mean "cnn"?)']),
        ("name: m\nmodel: {arch: cnn, params: {filter: [4]}}\n", ['unknown parameter "filter" for model "cnn" (did you mean "filters"?)']),
        ("name: m\nmodel: {arch: mlp}\nquantize: {precisions: [int4]}\n",
         ["quantize.precisions[0]: expected 'fp32', 'fp16', 'bf16', 'dynamic', 'int8', 'int8-mixed', 'int8-fast' or 'int16x8'",
          "received 'int4'"]),
        ("name: m\nmodel: {arch: mlp}\nexport: {formats: [tflit]}\n", ['unknown format "tflit" (did you mean "tflite"?)']),
        ("name: m\nmodel: {arch: mlp}\ndata: {source: npz}\n", ["data: source npz needs a path"]),
        ("name: m\nmodel: {}\n", ["model: give exactly one of model.arch"]),
        ("model: {arch: mlp}\n", ["name: required field is missing"]),
        ("name: m\nmodel: {arch: mlp}\ntargets: [cpu, gpuu]\n", ['unknown target "gpuu" (did you mean "gpu"?)']),
    ],
)
def test_bad_recipes_get_one_line_naming_field(write_recipe, text, expected):
    path = write_recipe(text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = info.value.message
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    for fragment in expected:
        assert fragment in message
    assert info.value.exit_code == 2


def test_yaml_syntax_error_names_line(write_recipe):
    path = write_recipe("name: m\nmodel: {arch: mlp\ntrain: [\n")
    with pytest.raises(RecipeError, match=r"not valid YAML at line \d+, column \d+"):
        load_recipe(path)


def test_missing_file(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_top_level_must_be_mapping(write_recipe):
    with pytest.raises(RecipeError, match="expected a mapping of sections"):
        load_recipe(write_recipe("- just\n- a list\n"))


def test_relative_paths_resolve_against_recipe_folder(write_recipe, tmp_path):
    recipe = load_recipe(write_recipe("name: m\nmodel: {file: models/m.keras}\ndata: {source: npz, path: d.npz}\n"))
    assert recipe.data.path == (tmp_path / "d.npz").resolve()
    assert recipe.model.file == (tmp_path / "models" / "m.keras").resolve()


def test_safe_load_refuses_python_tags(write_recipe):
    path = write_recipe("name: !!python/object/apply:os.system ['echo pwned']\nmodel: {arch: mlp}\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(path)


def test_json_schema_lists_sections():
    schema = Recipe.model_json_schema()
    for section in ("name", "seed", "data", "model", "train", "quantize", "export", "targets", "benchmark"):
        assert section in schema["properties"]
    assert schema["additionalProperties"] is False
    json.dumps(schema)  # serialisable for editors


def test_python_builder_must_name_module_and_function(write_recipe):
    with pytest.raises(RecipeError, match="model.python: expected String should match pattern"):
        load_recipe(write_recipe("name: m\nmodel: {python: 'just_a_module'}\n"))
    with pytest.raises(RecipeError, match="give exactly one of model.arch"):
        load_recipe(write_recipe("name: m\nmodel: {python: 'mod:fn', arch: mlp}\n"))
