"""OpenVINO kernel pins (edgekit.convert.openvino.pin_kernels, used by int8-fast): the IR
carries each pinned node's kernels, the CPU plugin runs them, and the results do not change."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from edgekit.convert.openvino import KERNEL_CHOICES, kernel_alternatives, pin_kernels
from edgekit.formats import FORMATS, host_isa


@pytest.fixture(scope="module")
def small_conv_net(tmp_path_factory):
    """A 3x3 and a 1x1 convolution over few channels (where AMX int8 kernels are slow) and
    its int8 IR."""
    import tf_keras as keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="first")(inputs)
    x = keras.layers.Conv2D(16, 1, activation="relu", name="pointwise")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="head")(x), name="small")
    calibration = np.random.default_rng(3).random((64, 8, 8, 1), dtype=np.float32)
    path = tmp_path_factory.mktemp("kernel-pins") / "int8.xml"
    FORMATS["openvino"].load_converter()(model, path, "int8", calibration, {})
    return model, path, calibration


def _kernels(path, x) -> dict[str, str]:
    """Each executed convolution's kernel, as the CPU plugin's counters name it."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(path), "CPU", {"INFERENCE_NUM_THREADS": 1,
                                                                  "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": True})
    request = compiled.create_infer_request()
    request.infer({0: x})
    return {p.node_name: p.exec_type for p in request.profiling_info
            if p.status.name == "EXECUTED" and p.node_type == "Convolution"}


def _pinned(path) -> dict[str, str]:
    return {layer.get("name"): layer.find("data").get("PrimitivesPriority")
            for layer in ET.parse(path).getroot().iter("layer")
            if layer.find("data") is not None and layer.find("data").get("PrimitivesPriority")}


def test_a_pin_is_written_into_the_ir_and_the_plugin_runs_that_kernel(small_conv_net, tmp_path):
    from edgekit.runtimes.openvino import open_session

    _, path, x = small_conv_net
    default = _kernels(path, x[:1])
    pointwise = next(name for name in default if "pointwise" in name)
    target = tmp_path / "pinned.xml"
    pin_kernels(path, target, {pointwise: "avx512 jit"})
    assert _pinned(target) == {pointwise: KERNEL_CHOICES["avx512 jit"]} and not _pinned(path)
    pinned = _kernels(target, x[:1])
    if "avx512f" in host_isa():
        assert pinned[pointwise].startswith("jit_avx512_1x1"), pinned
    # the other node keeps the plugin's own choice; every CPU runs the IR (the plugin falls back
    # to its default where no kernel listed supports the node)
    assert {k: v for k, v in pinned.items() if k != pointwise} == {k: v for k, v in default.items() if k != pointwise}
    a, b = open_session(path).predict(x), open_session(target).predict(x)
    assert np.abs(a - b).max() < 1e-5  # the same int8 arithmetic on another kernel


def test_alternatives_are_offered_only_where_the_cpu_has_amx_int8(small_conv_net, tmp_path):
    _, path, _ = small_conv_net
    copies = kernel_alternatives(path, tmp_path)
    if "amx_int8" not in host_isa():
        assert copies == {}
        return
    assert set(copies) == set(KERNEL_CHOICES)
    convolutions = {layer.get("name") for layer in ET.parse(path).getroot().iter("layer")
                    if layer.get("type") == "Convolution"}
    for choice, copy in copies.items():
        assert _pinned(copy) == dict.fromkeys(convolutions, KERNEL_CHOICES[choice]) and len(convolutions) == 2


def test_int8_fast_keeps_pins_only_in_the_artifact_that_won(small_conv_net, tmp_path):
    from edgekit.convert.fast import build_fast
    from edgekit.runtimes.openvino import open_session

    model, _, x = small_conv_net
    path = tmp_path / "fast.xml"
    settings = build_fast(FORMATS["openvino"], model, path, x, {}, log=lambda line: None)
    fast = settings["fast"]
    assert fast["choice"] in ("int8", "kernels", "candidate", "fp32"), fast["why"]
    convolutions = {layer.get("name") for layer in ET.parse(tmp_path / "fast.xml").getroot().iter("layer")
                    if layer.get("type") == "Convolution"}
    if "amx_int8" in host_isa():
        # both convolutions were timed on each alternative kernel; a pin is where every round agreed
        assert {row["node"] for row in fast["kernels"]} == convolutions
        assert all(set(row["alternatives"]) == set(KERNEL_CHOICES) for row in fast["kernels"])
        pins = {row["node"]: row["pinned"] for row in fast["kernels"] if row["pinned"]}
        assert ("kernels" in fast["whole"]) == bool(pins)  # a pinned IR is timed whole against plain int8
    else:
        assert "kernels" not in fast and "kernels" not in fast["whole"]
        pins = {}
    assert fast["pinned_kernels"] == (pins if fast["choice"] in ("kernels", "candidate") else {})
    assert _pinned(path) == {node: KERNEL_CHOICES[choice] for node, choice in fast["pinned_kernels"].items()}
    reference = model(x[:32]).numpy()
    assert (open_session(path).predict(x[:32]).argmax(1) == reference.argmax(1)).mean() >= 0.8


def test_a_pinned_ir_runs_on_a_cpu_without_those_kernels(small_conv_net, tmp_path):
    """An IR pinned on an AMX machine, run where AVX-512 is missing (oneDNN capped at AVX2, as on
    a NUC-class CPU): the plugin runs its own kernels there, as for the IR without pins."""
    import json
    import os
    import subprocess
    import sys

    _, path, x = small_conv_net
    target = tmp_path / "pinned.xml"
    pin_kernels(path, target, {name: "avx512 jit" for name in _kernels(path, x[:1])})
    np.save(tmp_path / "x.npy", x[:8])
    script = (
        "import json, sys, numpy as np, openvino as ov\n"
        "from edgekit.runtimes.openvino import open_session\n"
        "x = np.load(sys.argv[1])\n"
        "core = ov.Core()\n"
        "def run(path):\n"
        "    config = {'PERF_COUNT': True, 'INFERENCE_PRECISION_HINT': 'f32'}\n"
        "    request = core.compile_model(core.read_model(path), 'CPU', config).create_infer_request()\n"
        "    request.infer({0: x[:1]})\n"
        "    kernels = [p.exec_type for p in request.profiling_info if p.node_type == 'Convolution']\n"
        "    return {'out': open_session(path).predict(x).tolist(), 'kernels': kernels}\n"
        "print(json.dumps([run(path) for path in sys.argv[2:]]))\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "x.npy"), str(path), str(target)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert done.returncode == 0, done.stderr[-2000:]
    plain, pinned = json.loads(done.stdout.strip().splitlines()[-1])
    assert pinned["kernels"] == plain["kernels"] and not any("avx512" in k for k in pinned["kernels"]), pinned
    assert np.abs(np.asarray(pinned["out"]) - np.asarray(plain["out"])).max() < 1e-6
