"""The input contract that travels with every artifact, and in-model preprocessing read from the
model: a Keras 3 model that divides by 255 inside (behind augmentation layers), built on a
folder of real PNGs, is fed pixels 0..255 in every row and in int8 calibration; each artifact is
then loaded the way a user would, from its contract alone, with the runtimes' own plain calls
(no edgekit session), on the PNGs' raw uint8 pixels, and gives its row's accuracy."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

CLASSES = ("checks", "hstripes", "vstripes")
SIZE = 12


def _pattern(kind: str, rng) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    period = int(rng.integers(2, 4))
    base = {"hstripes": (yy // period) % 2, "vstripes": (xx // period) % 2}.get(kind, ((yy + xx) // period) % 2)
    colour = rng.uniform(100, 255, 3)
    image = base[..., None] * colour + rng.normal(0, 20, (SIZE, SIZE, 3)) + rng.uniform(0, 50)
    return np.clip(image, 0, 255).astype(np.uint8)


def _read_pngs(folder) -> tuple[np.ndarray, np.ndarray]:
    """A split as a user has it: every PNG's uint8 pixels, the class from its folder."""
    from PIL import Image

    xs, ys = [], []
    for label, name in enumerate(CLASSES):
        for file in sorted((folder / name).glob("*.png")):
            xs.append(np.asarray(Image.open(file).convert("RGB")))
            ys.append(label)
    return np.stack(xs), np.array(ys)


@pytest.fixture(scope="module")
def pixel_run(tmp_path_factory):
    """One build of the PNG folder with the model that rescales inside (tflite io: uint8)."""
    import keras
    from click.testing import CliRunner
    from PIL import Image

    from edgekit.cli import cli

    root = tmp_path_factory.mktemp("contract")
    rng = np.random.default_rng(5)
    for split, count in (("train", 24), ("test", 12)):
        for name in CLASSES:
            (root / "pngs" / split / name).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(_pattern(name, rng)).save(root / "pngs" / split / name / f"{i:02d}.png")
    x, y = _read_pngs(root / "pngs" / "train")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    augment = keras.Sequential([keras.layers.RandomFlip("horizontal")], name="augment")
    h = keras.layers.Rescaling(1 / 255, name="to_unit")(augment(inputs))
    h = keras.layers.Conv2D(6, 3, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(h))
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    model.fit(x.astype("float32"), y, epochs=25, batch_size=12, verbose=0)  # raw pixels, as the user trains
    model.save(root / "rescales.keras")
    recipe = root / "recipe.yaml"
    recipe.write_text(textwrap.dedent("""
        name: pixels
        data: {source: images, path: pngs}
        model: {file: rescales.keras}
        quantize: {calibration_samples: 40}
        export:
          tflite: {io: uint8}
          openvino: {auto_bf16: false}
        benchmark: {warmup: 1, runs: 3, rounds: 1, inputs: 2, profile: false}
    """))
    # in this process (no worker importing TensorFlow again): a few seconds of conversions
    result = CliRunner(env={"EDGEKIT_WORKERS": "0"}).invoke(cli, ["build", str(recipe), "--out", str(root / "run")])
    assert result.exit_code == 0, result.output
    return root


@pytest.mark.slow
def test_a_model_that_divides_by_255_is_fed_pixels_everywhere(pixel_run):
    results = json.loads((pixel_run / "run" / "results.json").read_text())
    found = results["data"]["input_preprocessing"]["inputs"]
    assert [(f["input"], f["expects"], f["scaled_by"]) for f in found] == [("image", "0..255", 255.0)]
    assert [layer["layer"] for layer in found[0]["layers"]] == ["to_unit"]  # read through the augmentation
    assert results["data"]["input_range"]["x"] == [0.0, 255.0]
    rows = {row["id"]: row for row in results["rows"]}
    assert all(row["status"] == "ok" for row in rows.values()), [(r["id"], r["reason"]) for r in rows.values()]
    # fed [0, 1], this model scored chance (1/3) in every row
    assert rows["keras-fp32@cpu"]["metrics"]["accuracy"] >= 0.85
    for row in rows.values():
        assert row["metrics"]["accuracy"] >= rows["keras-fp32@cpu"]["metrics"]["accuracy"] - 0.1, row["id"]
    # uint8 I/O calibrated on pixels: the raw pixels go in as they are
    tensor = rows["tflite-int8@cpu"]["io"]["inputs"][0]
    assert tensor["dtype"] == "uint8"
    assert tensor["quantization"]["scale"] == pytest.approx(1.0, rel=0.02)
    assert tensor["quantization"]["zero_point"] == 0
    assert rows["tflite-int8@cpu"]["io"]["outputs"][0]["dtype"] == "uint8"


def _runner(contract: dict, path):
    """A batch-1 predict function made with the runtime's plain API and the contract's settings."""
    runtime = contract["runtime"]
    fmt = contract["format"]
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path), num_threads=runtime["num_threads"])
        interpreter.allocate_tensors()
        source, sink = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

        def run(x):
            interpreter.set_tensor(source["index"], x)
            interpreter.invoke()
            return interpreter.get_tensor(sink["index"])
        return run
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        chosen = runtime["session_options"]
        options.intra_op_num_threads = chosen["intra_op_num_threads"]
        options.inter_op_num_threads = chosen["inter_op_num_threads"]
        options.execution_mode = getattr(ort.ExecutionMode, chosen["execution_mode"])
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, chosen["graph_optimization_level"])
        session = ort.InferenceSession(str(path), options, providers=runtime["providers"])
        name = session.get_inputs()[0].name
        assert name == contract["inputs"][0]["name"]
        return lambda x: session.run(None, {name: x})[0]
    if fmt == "openvino":
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), runtime["device"], runtime["config"])
        return lambda x: compiled([x])[compiled.output(0)]
    assert fmt == "keras" and runtime["keras"] == "keras3"
    import keras

    model = keras.saving.load_model(path)
    return lambda x: np.asarray(model(x, training=False))


def _prepare(pixels: np.ndarray, tensor: dict) -> np.ndarray:
    """The raw uint8 pixels of one image as the contract's steps outside the artifact say."""
    x = pixels.astype(np.float32)
    for step in tensor["preprocessing"]:
        if step["inside_artifact"]:
            continue
        if step["step"] == "read":
            assert list(pixels.shape) == [*step["size"], step["channels"]]
        elif step["step"] == "scale":
            x = x * np.float32(step["multiply"]) + np.float32(step["add"])
        elif step["step"] == "quantize":
            limits = np.iinfo(step["dtype"])
            x = np.clip(np.round(x / step["scale"]) + step["zero_point"], limits.min, limits.max)
        else:
            raise AssertionError(f"a step this test does not know: {step}")
    return x.astype(tensor["dtype"])[None]


@pytest.mark.slow
def test_each_artifact_reproduces_its_row_from_its_contract_on_raw_pixels(pixel_run):
    run_dir = pixel_run / "run"
    results = json.loads((run_dir / "results.json").read_text())
    pixels, labels = _read_pngs(pixel_run / "pngs" / "test")
    checked = []
    for row in results["rows"]:
        contract = json.loads((run_dir / "artifacts" / f"{row['id']}.contract.json").read_text())
        assert row["contract"] == {"file": f"artifacts/{row['id']}.contract.json", **contract}
        (tensor,), (output,) = contract["inputs"], contract["outputs"]
        run = _runner(contract, run_dir / contract["artifact"])
        scores = []
        for image in pixels:
            raw = np.asarray(run(_prepare(image, tensor)))
            q = output.get("quantization")
            scores.append((raw.astype(np.float32) - q["zero_point"]) * q["scale"] if q else raw)
        accuracy = float(np.mean(np.concatenate(scores).argmax(axis=1) == labels))
        assert accuracy == pytest.approx(contract["metrics"]["values"]["accuracy"], abs=1.01 / len(labels)), row["id"]
        checked.append(row["id"])
    assert len(checked) == 7  # keras, and fp32 and int8 in each of the three formats


def test_contracts_of_the_tiny_build_name_each_runtime_setting(tiny_run):
    results = tiny_run.results
    for row in results["rows"]:
        contract = row["contract"]
        assert json.loads((tiny_run.dir / contract["file"]).read_text()) == {k: v for k, v in contract.items() if k != "file"}
        assert [(t["name"], t["dtype"], t["shape"]) for t in contract["inputs"]] == \
            [(t["name"], t["dtype"], t["shape"]) for t in row["io"]["inputs"]]
        steps = [s["step"] for s in contract["inputs"][0]["preprocessing"]]
        assert steps[0] == "read" and "digits" in contract["inputs"][0]["preprocessing"][0]["detail"]
        assert ("quantize" in steps) == (contract["inputs"][0]["dtype"] == "int8")
        settings, runtime = row["settings"], contract["runtime"]
        if row["format"] == "openvino":  # what reproduces the row: its own precision, never the CPU default
            assert runtime["config"]["INFERENCE_PRECISION_HINT"] == settings["inference_precision"]
            assert ("note" in runtime) == (settings["cpu_default_precision"] != settings["inference_precision"])
        elif row["format"] == "onnx":
            assert runtime["session_options"]["graph_optimization_level"] == settings["graph_optimization_level"]
        elif row["format"] == "tflite":
            assert runtime["num_threads"] == settings["threads"]
    report = (tiny_run.dir / "report.md").read_text()
    assert "## Input contract" in report and "| tflite-int8@cpu | input input | int8 |" in report
    assert "id='contracts'" in (tiny_run.dir / "report.html").read_text()


def test_a_range_that_does_not_fit_the_models_layers_is_said_in_the_contract_and_report():
    from edgekit.report.contract import attach, markdown_lines

    warning = "input image: the data's values 0..1 become 0..0.003922 after the model's own first layers"
    layers = [{"layer": "to_unit", "class": "Rescaling", "scale": 1 / 255, "offset": 0.0}]
    results = {
        "task": "classification", "primary_metric": "accuracy", "model": {"output": "probabilities"},
        "data": {"source": "npz", "splits": {"test": 3}, "classes": ["a", "b"], "labels_file": "labels.txt",
                 "normalize": {"kind": "none"}, "input_range": {"x": [0.0, 1.0]},
                 "input_preprocessing": {"inputs": [{"input": "image", "layers": layers, "scale": 1 / 255, "offset": 0.0,
                                                     "warning": warning}]}},
        "rows": [{"id": "tflite-int8@cpu", "format": "tflite", "precision": "int8", "model": "base", "target": "cpu",
                  "status": "ok", "path": "artifacts/tflite-int8.tflite", "runtime": "ai_edge_litert 2.3.0",
                  "settings": {"threads": 2}, "metrics": {"accuracy": 0.5},
                  "io": {"inputs": [{"name": "input", "dtype": "int8", "shape": [1, 4, 4, 3],
                                     "quantization": {"scale": 0.5, "zero_point": -128}}],
                         "outputs": [{"name": "output_0", "dtype": "float32", "shape": [1, 2]}]}},
                 {"id": "onnx-int8@cpu", "format": "onnx", "precision": "int8", "status": "failed", "path": None}]}
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        (written,) = attach(results, Path(folder))
        assert written.name == "tflite-int8@cpu.contract.json" and "contract" not in results["rows"][1]
    (tensor,) = results["rows"][0]["contract"]["inputs"]
    assert tensor["warning"] == warning and tensor["representable"] == [0.0, 127.5]
    assert [(s["step"], s["inside_artifact"]) for s in tensor["preprocessing"]] == [
        ("read", False), ("quantize", False), ("model layers", True)]
    assert results["rows"][0]["contract"]["runtime"]["num_threads"] == 2
    assert f"- warning: {warning}" in markdown_lines(results)
