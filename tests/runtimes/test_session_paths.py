"""The sessions' cheap call paths compute exactly what the public runtime APIs compute.

Each session hands inputs and outputs the cheapest way its runtime allows (LiteRT: a view of
the input buffer and the wrapper's Invoke; onnxruntime: input and output bound once;
OpenVINO: the C++ request's infer with the output view fetched once). These tests hold the
outputs against each runtime's plain public API, through ``predict`` and through the timing
loop's pattern (many prepared feeds, cycled), and check that ``harness_cost`` gives sane
figures. No timing is asserted beyond sanity: speed is shown by benchmarks/harness_overhead.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.formats import FORMATS
from tests.conftest import FORMAT_CASES


def _public_api_outputs(fmt_name: str, path, x: np.ndarray) -> np.ndarray:
    """Outputs through each runtime's plain public calls, one sample at a time."""
    out = []
    if fmt_name == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path), num_threads=1)
        interpreter.allocate_tensors()
        i, o = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        for sample in x:
            feed = sample[None]
            scale, zero = i["quantization"]
            if np.issubdtype(i["dtype"], np.integer) and scale:
                info = np.iinfo(i["dtype"])
                feed = np.clip(np.round(feed / scale + zero), info.min, info.max)
            interpreter.set_tensor(i["index"], feed.astype(i["dtype"]))
            interpreter.invoke()
            raw = interpreter.get_tensor(o["index"])
            if np.issubdtype(raw.dtype, np.integer):
                scale, zero = o["quantization"]
                raw = (raw.astype(np.float32) - zero) * scale
            out.append(raw.astype(np.float32))
    elif fmt_name == "onnx":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        out = [session.run(None, {name: sample[None]})[0].astype(np.float32) for sample in x]
    else:
        from edgekit.runtimes.openvino import disable_telemetry

        disable_telemetry()
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32",
                                                              "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        out = [np.array(request.infer({0: sample[None]})[0], dtype=np.float32) for sample in x]
    return np.concatenate(out)


@pytest.mark.parametrize("fmt_name, precision", FORMAT_CASES)
def test_predict_equals_the_public_api_bit_for_bit(tiny_artifacts, digits, fmt_name, precision):
    x = digits[0][:40]
    session = FORMATS[fmt_name].load_runtime()(tiny_artifacts[fmt_name, precision], 1, {})
    np.testing.assert_array_equal(session.predict(x), _public_api_outputs(fmt_name, tiny_artifacts[fmt_name, precision], x))


@pytest.mark.parametrize("fmt_name, precision", FORMAT_CASES)
def test_cycling_prepared_feeds_gives_each_its_own_output(tiny_artifacts, digits, fmt_name, precision):
    """The timing loop prepares many feeds once and cycles through them: each run must compute
    on its own feed, and a decoded output must not change when a later run reuses the buffers."""
    x = digits[0][:12]
    session = FORMATS[fmt_name].load_runtime()(tiny_artifacts[fmt_name, precision], 1, {})
    expected = session.predict(x)
    assert len({row.tobytes() for row in expected}) > 1  # different samples, different outputs
    feeds = [session.prepare(x[i : i + 1]) for i in range(len(x))]
    decoded = []
    for _ in range(2):
        for i, feed in enumerate(feeds):
            decoded.append((i, session.decode(session.run(feed))))
    for i, out in decoded:  # checked after every run: none aliases a reused buffer
        np.testing.assert_array_equal(out, expected[i : i + 1])


@pytest.mark.parametrize("fmt_name, precision", FORMAT_CASES)
def test_harness_cost_is_sane(tiny_artifacts, digits, fmt_name, precision):
    session = FORMATS[fmt_name].load_runtime()(tiny_artifacts[fmt_name, precision], 1, {})
    feed = session.prepare(digits[0][:1])
    cost = session.harness_cost(feed, runs=100)
    assert set(cost) >= {"call_ms", "runtime_only_ms", "harness_ms", "how"}
    assert cost["call_ms"] > 0 and cost["runtime_only_ms"] > 0 and cost["harness_ms"] >= 0
    # The runtime's own part is part of the call (the margin absorbs a noisy shared machine).
    assert cost["runtime_only_ms"] <= cost["call_ms"] * 1.5
    assert cost["harness_ms"] == pytest.approx(max(0.0, cost["call_ms"] - cost["runtime_only_ms"]), abs=2e-6)
    assert cost["call_ms"] < 50 and isinstance(cost["how"], str) and cost["how"]
    # Measuring it leaves the session as it was: the next outputs are still right.
    np.testing.assert_array_equal(session.predict(digits[0][:5]), session.predict(digits[0][:5]))
    assert session.timed_call


def test_litert_falls_back_to_the_public_calls_for_a_dynamic_shape(tiny_artifacts, digits, monkeypatch):
    """A tensor whose shape is not static may move between invokes: no views are held then,
    and the public copying calls give the same outputs."""
    from edgekit.runtimes import litert

    path = tiny_artifacts["tflite", "int8"]
    fast = litert.open_session(path, 1)
    monkeypatch.setattr(litert, "_static", lambda details: False)
    public = litert.open_session(path, 1)
    assert fast._views is not None and public._views is None
    assert public.timed_call == "set_tensor + invoke + get_tensor"
    np.testing.assert_array_equal(public.predict(digits[0][:10]), fast.predict(digits[0][:10]))
    np.testing.assert_array_equal(public.predict(digits[0][:10]), _public_api_outputs("tflite", path, digits[0][:10]))
    assert public.harness_cost(public.prepare(digits[0][:1]), runs=20)["call_ms"] > 0


def test_openvino_falls_back_to_the_public_infer(tiny_artifacts, digits, monkeypatch):
    """An openvino whose pybind InferRequest lacks the infer signature used: the public calls."""
    from edgekit.runtimes import openvino as ov_session

    path = tiny_artifacts["openvino", "int8"]
    fast = ov_session.open_session(path, 1)
    monkeypatch.setattr(ov_session, "_native_infer", lambda request: None)
    public = ov_session.open_session(path, 1)
    assert fast._infer is not None and public._infer is None and "set_input_tensor" in public.timed_call
    np.testing.assert_array_equal(public.predict(digits[0][:10]), fast.predict(digits[0][:10]))
    assert public.harness_cost(public.prepare(digits[0][:1]), runs=20)["runtime_only_ms"] > 0


def test_onnxruntime_without_the_cpp_session_object_uses_the_wrapper(tiny_artifacts, digits):
    """An onnxruntime whose InferenceSession has no ``_sess``: the public run_with_iobinding."""
    from edgekit.runtimes.onnxruntime import open_session

    path = tiny_artifacts["onnx", "int8"]
    fast = open_session(path, 1)
    public = open_session(path, 1)
    public._run = None  # what __init__ finds without InferenceSession._sess
    assert public.prepare(digits[0][:1])[1] is None
    np.testing.assert_array_equal(public.predict(digits[0][:10]), fast.predict(digits[0][:10]))
    assert "alone" in public.harness_cost(public.prepare(digits[0][:1]), runs=20)["how"]


def test_the_harness_figure_times_no_more_calls_than_the_recipe(tiny_run):
    """The side figure of what Python adds per call took 200 calls of each side whatever the recipe
    said (84 s for one 190 ms row of basic-pitch's 20-run recipe); now at most benchmark.runs."""
    measured = [row["harness"] for row in tiny_run.results["rows"] if row.get("harness")]
    assert measured and all(0 < harness["runs"] <= 20 for harness in measured)  # TINY_RECIPE: runs 20
