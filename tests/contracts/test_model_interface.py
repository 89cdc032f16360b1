"""A model's whole interface: several inputs (an integer one beside a float one), several outputs
(list and dict), free dimensions; through the data, the converters, every session, the device
runner, TFLite Micro, a build's results, `edgekit check`, `edgekit init` and `edgekit bench`.

The models are tiny Keras 3 and tf_keras functional models made here (a few hundred weights,
untrained: only agreement between runtimes and the per-output bookkeeping are asserted), and
ONNX graphs written with onnx.helper for `edgekit bench` (a recurrent-state input whose batch
axis is not first, an int64 scalar input, free dimensions, weights inside an If subgraph).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.runtimes import join_fields

N = 48


def _two_by_two(keras, dict_outputs: bool):
    """ids (int32 [6]) + image (float [6, 6, 1]) -> cls (softmax [3]) and box ([2])."""
    ids = keras.Input((6,), dtype="int32", name="ids")
    image = keras.Input((6, 6, 1), name="image")
    e = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(12, 4)(ids))
    h = keras.layers.SeparableConv2D(3, 3, padding="same")(image)
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.PReLU()(h))
    z = keras.layers.Concatenate()([e, h])
    cls = keras.layers.Dense(3, activation="softmax", name="cls")(z)
    box = keras.layers.Dense(2, name="box")(z)
    return keras.Model([ids, image], {"cls": cls, "box": box} if dict_outputs else [cls, box])


@pytest.fixture(scope="module")
def interface(tmp_path_factory):
    """A Keras 3 model of two inputs and two outputs (a list), its data as the npz a user saves
    (labels for cls only: box is scored against the Keras model), and the same model's samples."""
    import keras

    keras.utils.set_random_seed(2)
    folder = tmp_path_factory.mktemp("interface")
    model = _two_by_two(keras, dict_outputs=False)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 12, (N, 6))
    image = rng.random((N, 6, 6, 1), dtype=np.float32)
    kernel, bias = model.get_layer("cls").get_weights()
    model.get_layer("cls").set_weights([kernel * 30, bias])  # confident: with seed 2, 15/23/10 samples per class
    cls = np.asarray(model([ids, image])[0]).argmax(-1)  # the model's own answers: accuracy 1.0 at fp32
    model.save(folder / "two.keras")
    np.savez(folder / "two.npz", x_ids=ids, x_image=image, y_cls=cls)
    return folder, model, join_fields([("ids", ids.astype(np.int64)), ("image", image)])


def test_npz_arrays_named_after_inputs_and_outputs_become_one_field_each(interface, tmp_path):
    from edgekit.data import load_dataset
    from edgekit.errors import DataError
    from edgekit.recipe.schema import DataSpec

    folder, _, _ = interface
    data = load_dataset(DataSpec(source="npz", path=folder / "two.npz", normalize="standard"), 0, 16)
    assert data.x_train.dtype.names == ("ids", "image") and data.x_train.dtype["ids"].base == np.int64
    assert data.y_test.dtype.names == ("cls",) and data.output_tasks == {"cls": "classification"}
    assert list(data.normalization.by_input) == ["image"]  # integer ids are never normalized
    # the model trains on normalized floats (ids untouched); the artifacts take raw inputs (embedded)
    assert abs(float(data.x_train["image"].mean())) < 1e-5 and data.x_train["ids"].max() > 1
    assert float(data.x_test["image"].min()) >= 0 and data.embedded
    np.savez(tmp_path / "bad.npz", x_train_ids=np.zeros((4, 6)), x_test_idz=np.zeros((2, 6)), y_train=np.zeros(4),
             y_test=np.zeros(2))
    with pytest.raises(DataError, match=r"the splits name different inputs \(x_train: ids; x_test: idz\)"):
        load_dataset(DataSpec(source="npz", path=tmp_path / "bad.npz"), 0, 4)


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_every_format_runs_each_output_by_name_and_fixes_free_dims(interface, tmp_path, flavour):
    """fp32 artifacts agree with Keras output by output (the converters reorder outputs: ONNX and
    TFLite sort them), int8 TFLite quantizes the float input only; a free-dims model converts at
    the calibration samples' shape."""
    from edgekit.formats import FORMATS
    from edgekit.train.fit import predict

    folder, model, x = interface
    if flavour == "tf_keras":
        import tf_keras

        model = _two_by_two(tf_keras, dict_outputs=True)
    expected = predict(model, x)
    assert set(expected.dtype.names) == {"cls", "box"}
    for fmt_name, precision in [("tflite", "fp32"), ("onnx", "fp32"), ("openvino", "fp32"), ("tflite", "int8")]:
        fmt = FORMATS[fmt_name]
        path = tmp_path / f"{fmt_name}-{precision}{fmt.suffix}"
        fmt.load_converter()(model, path, precision, x[:32], {})
        session = fmt.load_runtime()(path, 1, {})
        got = session.predict(x[:8])
        io = session.io()
        assert {i["name"] for i in io["inputs"]} == {"ids", "image"} and {o["name"] for o in io["outputs"]} == {"cls", "box"}
        for name in ("cls", "box"):
            tolerance = 0.1 if precision == "int8" else 1e-4
            assert np.abs(got[name] - expected[name][:8]).max() < tolerance, (fmt_name, precision, name)
        if precision == "int8":
            dtypes = {i["name"]: (i["dtype"], "quantization" in i) for i in io["inputs"]}
            assert dtypes == {"ids": ("int32", False), "image": ("int8", True)}
    if flavour == "keras3":
        import keras

        free = keras.Input((None, None, 3))
        small = keras.Model(free, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(free))))
        fmt = FORMATS["tflite"]
        fmt.load_converter()(small, tmp_path / "free.tflite", "fp32", np.zeros((4, 6, 10, 3), np.float32), {})
        assert fmt.load_runtime()(tmp_path / "free.tflite", 1, {}).io()["inputs"][0]["shape"] == [1, 6, 10, 3]


def test_the_device_runner_and_tflite_micro_run_several_inputs_and_outputs(interface, tmp_path):
    """The shipped runner (numpy<2 + tflite-runtime 2.14 where the test device Python is set)
    and TFLite Micro give the host session's outputs, field by field."""
    import os

    from edgekit.formats import FORMATS
    from edgekit.targets import ssh
    from edgekit.targets.mcu_run import TflmSession
    from edgekit.targets.ssh_transport import LocalConnection

    _, model, x = interface
    fmt = FORMATS["tflite"]
    path = tmp_path / "int8.tflite"
    fmt.load_converter()(model, path, "int8", x[:32], {})
    host = fmt.load_runtime()(path, 1, {}).predict(x[:12])
    python = os.environ.get("EDGEKIT_TEST_DEVICE_PYTHON") or sys.executable
    profile = ssh.SshProfile(host="localhost", python=python, work_dir=str(tmp_path / "work"),
                             runtimes=["litert", "tflite_runtime"], timeout_s=120)
    profile._name = "local"
    run = ssh.run_artifact(profile, fmt, [path], profile.modules_for(fmt.runtime_packages), x[:4], x[:12],
                           warmup=1, runs=3, connection=LocalConnection(profile))
    for name in ("cls", "box"):
        assert np.abs(run.outputs[name] - host[name]).max() <= 0.02 * max(1.0, float(np.abs(host[name]).max()))
    # TFLite Micro has no SELECT kernel (Keras 3's Embedding makes one for negative ids): two float inputs there
    import keras

    a, b = keras.Input((6, 6, 1), name="a"), keras.Input((4,), name="b")
    z = keras.layers.Concatenate()([keras.layers.Flatten()(keras.layers.Conv2D(2, 3)(a)), b])
    small = keras.Model([a, b], {"p": keras.layers.Dense(3, activation="softmax")(z), "q": keras.layers.Dense(2)(z)})
    xs = join_fields([("a", x["image"]), ("b", x["image"][:, 0, :4, 0])])
    fmt.load_converter()(small, tmp_path / "small.tflite", "int8", xs[:32], {})
    host = fmt.load_runtime()(tmp_path / "small.tflite", 1, {}).predict(xs[:12])
    tflm = TflmSession((tmp_path / "small.tflite").read_bytes(), 1 << 20)
    micro = tflm.predict(xs[:12])
    assert [t.name for t in tflm.inputs] == ["a", "b"] or [t.name for t in tflm.inputs] == ["b", "a"]
    for name in ("p", "q"):  # TFLM's reference kernels round a step apart from XNNPACK at most
        step = next(o.scale for o in tflm.outputs if o.name == name)
        assert np.abs(micro[name] - host[name]).max() <= 2 * step + 1e-6


def test_scores_each_output_and_the_headline_is_the_worst():
    from edgekit.evaluate import scores

    rng = np.random.default_rng(0)
    ref = join_fields([("a", rng.normal(size=(40, 3)).astype(np.float32)), ("b", rng.normal(size=(40, 2)).astype(np.float32))])
    row = ref.copy()
    row["b"] = row["b"] + rng.normal(scale=0.3, size=(40, 2)).astype(np.float32)  # one broken head
    per = scores.output_scores("fidelity", row, ref)
    metrics, parity = scores.headline(per, "fidelity")
    assert per["a"]["metrics"]["snr_db"] == scores.SNR_CAP and per["b"]["headline"] and not per["a"]["headline"]
    assert metrics["snr_db"] == per["b"]["metrics"]["snr_db"] < 15  # never a pooled figure
    pooled = scores.snr_db(np.concatenate([row["a"], row["b"]], 1), np.concatenate([ref["a"], ref["b"]], 1))
    assert pooled > metrics["snr_db"] + 1
    assert parity["max_abs_diff"] == per["b"]["parity"]["max_abs_diff"]


@pytest.mark.slow
def test_a_build_scores_every_output_and_check_gates_one(interface, tmp_path):
    """Two inputs (int + float), two outputs (one labelled): every row has both outputs' scores,
    the headline is cls's accuracy, io names the artifact's inputs, a budget names box."""
    folder, _, _ = interface
    recipe = tmp_path / "two.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "two", "task": "classification",
        "data": {"source": "npz", "path": str(folder / "two.npz")},
        "model": {"file": str(folder / "two.keras")},
        "quantize": {"precisions": ["fp32", "int8"], "calibration_samples": 24},
        "export": {"formats": ["tflite"]}, "benchmark": {"runs": 6, "warmup": 1, "inputs": 2, "rounds": 2, "profile": False},
        "check": {"rules": [{"rows": "*", "max_metric_drop": 0.5, "outputs": {"box": {"min_metric": 200.0}}}]},
    }))
    run = tmp_path / "run"
    built = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(run)])
    assert built.exit_code == 0, built.output
    results = json.loads((run / "results.json").read_text())
    rows = {row["id"]: row for row in results["rows"]}
    assert set(rows) == {"keras-fp32@cpu", "tflite-fp32@cpu", "tflite-int8@cpu"}
    for row in rows.values():
        outputs = row["outputs"]
        assert outputs["cls"]["task"] == "classification" and outputs["box"]["task"] == "fidelity"
        assert outputs["cls"]["headline"] and row["metrics"] == outputs["cls"]["metrics"]
        assert {i["name"] for i in row["io"]["inputs"]} == {"ids", "image"}
    assert rows["tflite-fp32@cpu"]["outputs"]["cls"]["metrics"]["accuracy"] == 1.0
    assert rows["tflite-fp32@cpu"]["outputs"]["box"]["metrics"]["snr_db"] > 90
    assert rows["tflite-int8@cpu"]["outputs"]["box"]["metrics"]["snr_db"] < 90
    assert {i["name"]: i["dtype"] for i in rows["tflite-int8@cpu"]["io"]["inputs"]} == {"ids": "int32", "image": "int8"}
    assert "no per-layer error: ValueError: the model has 2 inputs" in built.output  # said, not guessed
    # the sanity floor is the labelled classification head's (10 test samples, 3 classes)
    assert results["sanity"]["output"] == "cls" and results["sanity"]["classes"] == 3
    assert "| id | cls (classification: accuracy) | box (fidelity: snr_db) |" in (run / "report.md").read_text()
    checked = CliRunner().invoke(cli, ["check", str(run), "--recipe", str(recipe)])
    assert checked.exit_code == 1 and "output box snr_db min" in checked.output


def test_init_writes_every_output_or_refuses_in_one_line(interface, tmp_path):
    folder, _, _ = interface
    out = tmp_path / "r.yaml"
    done = CliRunner().invoke(cli, ["init", "--model", str(folder / "two.keras"), "--data", str(folder / "two.npz"),
                                    "--out", str(out)])
    assert done.exit_code == 0, done.output
    text = out.read_text()
    assert "model inputs: ids [6] (int32), image [6, 6, 1] (float32)" in text and "no labels for box" in text
    assert yaml.safe_load(text)["task"] == "classification"
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "plain.npz", x_ids=rng.integers(0, 12, (8, 6)), x_image=np.zeros((8, 6, 6, 1)), y=np.zeros(8))
    refused = CliRunner().invoke(cli, ["init", "--model", str(folder / "two.keras"), "--data", str(tmp_path / "plain.npz"),
                                       "--out", str(tmp_path / "p.yaml")])
    assert refused.exit_code == 2 and "y_train_cls, y_train_box" in refused.output
    assert len(refused.output.strip().splitlines()) == 1 and not (tmp_path / "p.yaml").exists()


def _vad_like(path, weights_in_if: bool = False):
    """An ONNX graph like a voice-activity model: input [N, ?] float, state [2, N, 4] float (its
    batch axis second), sr int64 scalar -> output [N, 1], stateN [2, N, 4]."""
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).ravel().tolist())
    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], keepdims=1, axes=[1]),
             helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["m", "srf"], ["output"])]
    if weights_in_if:
        branch = helper.make_graph([helper.make_node("MatMul", ["state", "w"], ["s2"])], "then", [],
                                   [helper.make_tensor_value_info("s2", TensorProto.FLOAT, None)], [w])
        nodes += [helper.make_node("Cast", ["sr"], ["cond"], to=TensorProto.BOOL),
                  helper.make_node("If", ["cond"], ["stateN"], then_branch=branch, else_branch=branch)]
        inits = []
    else:
        nodes.append(helper.make_node("MatMul", ["state", "w"], ["stateN"]))
        inits = [w]
    graph = helper.make_graph(nodes, "vad", [
        helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "samples"]),
        helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 4]),
        helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1]),
         helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "batch", 4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def test_bench_feeds_every_input_in_its_dtype_and_fixes_free_dims(tmp_path):
    _vad_like(tmp_path / "vad.onnx")
    _vad_like(tmp_path / "vad_if.onnx", weights_in_if=True)
    args = ["bench", str(tmp_path / "vad.onnx"), "--runs", "3", "--warmup", "1", "--no-profile"]
    free = CliRunner().invoke(cli, args)
    assert free.exit_code == 2 and "input [1, ?] (axis 1)" in free.output and "--shape input=1xN" in free.output
    assert "--inputs" in free.output
    shaped = CliRunner().invoke(cli, [*args, "--shape", "input=1x8", "--out", str(tmp_path / "a.json")])
    assert shaped.exit_code == 0, shaped.output
    row = json.loads((tmp_path / "a.json").read_text())["rows"][0]
    assert row["settings"]["input_shapes"] == {"input": [1, 8]} and row["precision"] == "fp32"
    assert {i["name"]: i["shape"] for i in row["io"]["inputs"]} == {"input": [1, 8], "state": [2, 1, 4], "sr": []}
    rng = np.random.default_rng(0)  # an npz keyed by input names: sr keeps int64 (16000 exact)
    np.savez(tmp_path / "x.npz", input=rng.random((5, 16), dtype=np.float32), state=np.zeros((5, 2, 1, 4), np.float32),
             sr=np.full(5, 16000, np.int64))
    given = CliRunner().invoke(cli, ["bench", str(tmp_path / "vad.onnx"), str(tmp_path / "vad_if.onnx"), "--inputs",
                                     str(tmp_path / "x.npz"), "--runs", "3", "--warmup", "1", "--no-profile",
                                     "--out", str(tmp_path / "b.json")])
    assert given.exit_code == 0, given.output
    results = json.loads((tmp_path / "b.json").read_text())
    assert results["rows"][1]["precision"] == "unknown (weights inside If subgraphs)"
    assert results["inputs"]["files"]["vad.onnx"][2] == {"name": "sr", "dtype": "int64", "shape": [],
                                                         "values": f"{tmp_path / 'x.npz'}, its own dtype int64"}
    missing = CliRunner().invoke(cli, ["bench", str(tmp_path / "vad.onnx"), "--inputs", str(tmp_path / "x.npz"),
                                       "--shape", "inptu=1x8"])
    assert missing.exit_code == 2 and 'did you mean "input"' in missing.output


def _needs_sample_count(path):
    """An ONNX graph whose int64 scalar input is a setting, not data (as silero-vad's sample rate):
    input [1, 8] is reshaped to [1, n], which fails for the generated n of 0 or 1."""
    import onnx
    from onnx import TensorProto, helper

    one = helper.make_tensor("one", TensorProto.INT64, [1], [1])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [0])
    graph = helper.make_graph([
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["one", "n1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["input", "shape"], ["output"], allowzero=1)], "needs_n", [
        helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8]),
        helper.make_tensor_value_info("n", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, None])], [one, axes])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), path)


def test_bench_names_generated_integers_of_a_failed_row_and_times_the_files_it_can_open(tmp_path):
    """A failed row says which integer inputs were generated and the fix; of several files, one no
    runtime here opens fails its own row (a MediaPipe .tflite with a custom op stopped the whole
    run with exit 2) and the others are timed. Given n, the scalar is fed as a scalar (every session
    fed it as [8], which this graph refuses)."""
    _needs_sample_count(tmp_path / "needs_n.onnx")
    (tmp_path / "broken.tflite").write_bytes(b"not a flatbuffer")
    _vad_like(tmp_path / "vad.onnx")
    args = ["--runs", "3", "--warmup", "1", "--no-profile", "--shape", "input=1x8", "--out", str(tmp_path / "r.json")]
    result = CliRunner().invoke(cli, ["bench", str(tmp_path / "needs_n.onnx"), str(tmp_path / "broken.tflite"),
                                      str(tmp_path / "vad.onnx"), *args])
    assert result.exit_code == 1, result.output
    rows = {row["id"]: row for row in json.loads((tmp_path / "r.json").read_text())["rows"]}
    assert rows["vad.onnx@cpu"]["status"] == "ok" and rows["vad.onnx@cpu"]["latency_ms"]["p50"] > 0
    assert rows["broken.tflite@cpu"]["status"] == "failed"
    assert "broken.tflite: cannot read its inputs here" in rows["broken.tflite@cpu"]["reason"]
    failed = rows["needs_n.onnx@cpu"]
    assert failed["status"] == "failed" and failed["reason"].endswith(
        "its integer input(s) n were random integers 0..1: give the values the model expects with --inputs "
        "FILE.npz (one array per input, named after it)")
    np.savez(tmp_path / "n.npz", input=np.ones((2, 8), np.float32), n=np.full(2, 8, np.int64))
    given = CliRunner().invoke(cli, ["bench", str(tmp_path / "needs_n.onnx"), "--inputs", str(tmp_path / "n.npz"),
                                     "--runs", "3", "--warmup", "1", "--no-profile"])
    assert given.exit_code == 0, given.output


def test_a_row_whose_device_failed_says_nothing_of_the_inputs_it_never_ran(tiny_artifacts, tmp_path):
    """An int8 file's inputs are generated integers; on a device that cannot be reached (here: its
    key is missing) the row fails naming the device's problem alone, not the inputs."""
    devices = tmp_path / "devices"
    devices.mkdir()
    (devices / "dev.yaml").write_text("host: 127.0.0.1\nidentity_file: no_such_key\nruntimes: [litert]\n")
    result = CliRunner().invoke(cli, ["bench", str(tiny_artifacts["tflite", "int8"]), "--target", "dev", "--devices",
                                      str(devices), "--runs", "3", "--warmup", "1", "--no-profile", "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 1, result.output
    document = json.loads((tmp_path / "r.json").read_text())
    (row,) = document["rows"]
    assert [i["values"] for i in document["inputs"]["files"]["tflite-int8.tflite"]] == ["random integers 0..1"]
    assert row["reason"] == f"device dev: identity file {devices / 'no_such_key'} not found; fix identity_file in {devices / 'dev.yaml'}"
