"""The contract every target kind must meet, written once (NNCF-style template tests).

Each kind subclasses TargetContract and fills in a few hooks: how to make one (``target``),
and what it must do with each variant of a tiny real model (``expected``: the status of its
Measurement, or None where ``supports`` must say no). The checks then run real runtimes on
real artifacts: cpu here, gpu (its rows are skipped with a reason when there is no GPU, and
must be ok when there is one), ssh through a real sshd (skipped without OpenSSH).
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest

from edgekit.formats import FORMATS
from edgekit.targets import KINDS, Target, builtin_names, in_order, kind, resolve
from edgekit.variant import Variant

# The sshd fixture of the device tests (it skips without OpenSSH or the device Python).
from tests.targets.sshd import ssh_server  # noqa: F401 - registers the fixture

SPEC = SimpleNamespace(warmup=1, runs=3, min_time_s=0.0, threads=1)
STEMS = ("keras-fp32", "tflite-fp32", "tflite-int8", "onnx-fp32", "onnx-int8", "openvino-int8", "pruned-onnx-fp32")


@pytest.fixture(scope="session")
def variants(tiny_model, tiny_artifacts):
    """The tiny CNN as the Keras baseline and in every format (the session's shared conversions),
    each with its host session."""
    from edgekit.runtimes.keras import open_session

    out = {"keras-fp32": Variant(format="keras", precision="fp32", session=open_session(tiny_model, 1))}
    for stem in STEMS[1:]:
        model, fmt_name, precision = (["base", *stem.split("-")] if stem.count("-") == 1 else stem.split("-"))
        path = tiny_artifacts[fmt_name, precision]
        session = FORMATS[fmt_name].load_runtime()(path, 1, {})
        out[stem] = Variant(format=fmt_name, precision=precision, model=model, path=path, session=session,
                            runtime=session.runtime, settings=dict(session.settings))
    return out


class TargetContract:
    """What every target kind must do. Subclasses set ``kind`` and ``expected`` and provide
    the ``target`` fixture."""

    kind: str
    #: stem -> the status its Measurement must have ("ok", "skipped"), None: not supported
    expected: dict[str, str | None]

    @pytest.fixture
    def target(self) -> Target:
        raise NotImplementedError

    def test_is_its_kind_listed_once(self, target):
        assert isinstance(target, Target) and isinstance(target, kind(self.kind)) and target.kind == self.kind
        assert self.kind in KINDS and target.name
        assert isinstance(target.evaluates, bool) and isinstance(target.is_reference, bool)
        assert isinstance(target.order, int) and isinstance(target.measures_latency, bool)

    def test_supports(self, target, variants):
        assert set(self.expected) == set(STEMS)
        decisions = {stem: target.supports(variants[stem]) for stem in STEMS}
        assert decisions == {stem: status is not None for stem, status in self.expected.items()}
        for stem, status in self.expected.items():
            if status is None:
                reason = target.unsupported_reason(variants[stem])
                assert reason and "\n" not in reason and target.name in reason

    @pytest.mark.parametrize("stem", STEMS)
    def test_measure(self, target, variants, digits, stem):
        status = self.expected[stem]
        if status is None:
            pytest.skip(f"{self.kind} does not support {stem} (test_supports checks that)")
        x, _ = digits
        variant, eval_x = variants[stem], x[1400:1450]
        m = target.measure(variant, SPEC, list(x[:4]), eval_x)
        assert m.status == status, m.reason
        if m.status != "ok":
            assert m.reason and "\n" not in m.reason and not m.latencies_ms and m.outputs is None
            return
        if not target.measures_latency:  # a compiler's estimate is never passed off as a latency
            assert not m.latencies_ms and not m.rounds_ms and m.outputs is None
            return
        assert len(m.latencies_ms) >= SPEC.runs and all(t > 0 and np.isfinite(t) for t in m.latencies_ms)
        if target.evaluates:  # the row's metrics come from these outputs: they must be the model's
            host = variant.session.predict(eval_x)
            assert m.outputs.shape == host.shape and m.outputs.dtype == np.float32
            assert np.mean(m.outputs.argmax(1) == host.argmax(1)) >= 0.98
        else:
            assert m.outputs is None
        if m.settings is not None:
            json.dumps(m.settings)

    def test_environment(self, target):
        env = target.environment()
        assert isinstance(env, dict) and env
        json.dumps(env, default=str)


class TestCpu(TargetContract):
    kind = "cpu"
    expected: ClassVar[dict[str, str | None]] = dict.fromkeys(STEMS, "ok")

    @pytest.fixture
    def target(self):
        (cpu,) = resolve(["cpu"], []).values()
        return cpu

    def test_comes_first(self, target):
        others = resolve(["gpu"], [])
        assert list(in_order({**others, "cpu": target})) == ["cpu", "gpu"] and "cpu" in builtin_names()


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _has_cuda_onnxruntime() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers() and _has_gpu()


class TestGpu(TargetContract):
    """Without a GPU every supported row is skipped with its reason; with one, ok."""

    kind = "gpu"

    @property
    def expected(self):
        keras = "ok" if _has_gpu() else "skipped"
        onnx = "ok" if _has_cuda_onnxruntime() else "skipped"
        return {"keras-fp32": keras, "tflite-fp32": None, "tflite-int8": None, "onnx-fp32": onnx, "onnx-int8": None,
                "openvino-int8": None, "pruned-onnx-fp32": None}

    @pytest.fixture
    def target(self):
        (gpu,) = resolve(["gpu"], []).values()
        return gpu

    def test_is_the_speedup_reference(self, target):
        from edgekit.report.rows import speedup_baseline

        rows = [{"id": "keras-fp32@cpu", "format": "keras", "target": "cpu", "latency_ms": {"p50": 2.0}},
                {"id": "keras-fp32@gpu", "format": "keras", "target": target.name, "latency_ms": {"p50": 1.0}}]
        assert target.is_reference and speedup_baseline(rows)["id"] == "keras-fp32@gpu"


class TestSsh(TargetContract):
    """A real sshd on 127.0.0.1 and a device Python with numpy<2 and tflite-runtime 2.14 only."""

    kind = "ssh"
    expected: ClassVar[dict[str, str | None]] = {"keras-fp32": None, "tflite-fp32": "ok", "tflite-int8": "ok", "onnx-fp32": "skipped",
                "onnx-int8": "skipped", "openvino-int8": "skipped", "pruned-onnx-fp32": "skipped"}

    @pytest.fixture(scope="class")
    def target(self, ssh_server, tmp_path_factory):  # noqa: F811 - the fixture imported above
        from tests.targets.sshd import device_profile

        folder = tmp_path_factory.mktemp("ssh-target")
        device_profile(folder, "dev", ssh_server)
        (dev,) = resolve(["dev"], [folder / "devices"]).values()
        return dev

    def test_environment_is_the_devices_after_a_run(self, target, variants, digits):
        x, _ = digits
        assert target.measure(variants["tflite-int8"], SPEC, list(x[:2])).status == "ok"
        env = target.environment()
        assert env["device"] == "dev" and env["runtimes"]["tflite_runtime"]["ok"] and env["python"]



class TestMcu(TargetContract):
    """A microcontroller profile (kind mcu): the full-integer TFLite row runs in the real
    TFLite Micro interpreter on this machine; every other variant is not its to run."""

    kind = "mcu"
    expected: ClassVar[dict[str, str | None]] = {**dict.fromkeys(STEMS), "tflite-int8": "ok"}

    @pytest.fixture(scope="class")
    def target(self, tmp_path_factory):
        folder = tmp_path_factory.mktemp("mcu-target") / "devices"
        folder.mkdir()
        (folder / "m4.yaml").write_text("kind: mcu\nram_kb: 256\nflash_kb: 1024\n")
        (m4,) = resolve(["m4"], [folder]).values()
        return m4

    def test_comes_after_the_host_and_reports_its_memory(self, target, variants, digits):
        x, _ = digits
        m = target.measure(variants["tflite-int8"], SPEC, list(x[:2]), x[1400:1420])
        assert list(in_order({"m4": target, **resolve(["cpu"], [])})) == ["cpu", "m4"]
        fields = m.settings["row_fields"]
        size = variants["tflite-int8"].path.stat().st_size
        assert fields["flash_bytes"] == size and 1000 < fields["arena_bytes"] < 256 * 1024
        assert fields["agreement"]["top1"] >= 0.95 and "host time" in fields["latency_is"]


class TestEthosU(TargetContract):
    """An Arm Ethos-U profile (kind ethos-u): the full-integer TFLite row is compiled by the real
    Vela; its row holds Vela's estimate, never a latency; every other variant is not its to run."""

    kind = "ethos-u"
    expected: ClassVar[dict[str, str | None]] = {**dict.fromkeys(STEMS), "tflite-int8": "ok"}

    @pytest.fixture(scope="class")
    def target(self, tmp_path_factory):
        pytest.importorskip("ethosu.vela", reason="Vela is not installed: pip install -e '.[ethos-u]'")
        folder = tmp_path_factory.mktemp("ethos-u-target") / "devices"
        folder.mkdir()
        (folder / "u55.yaml").write_text("kind: ethos-u\naccelerator: ethos-u55-128\nsram_kb: 512\nflash_kb: 2048\n")
        (u55,) = resolve(["u55"], [folder]).values()
        return u55

    def test_places_every_op_and_estimates_without_timing(self, target, variants):
        m = target.measure(variants["tflite-int8"], SPEC, [])
        fields = m.settings["row_fields"]
        assert list(in_order({"u55": target, **resolve(["cpu"], [])})) == ["cpu", "u55"] and not target.evaluates
        assert fields["npu"]["operators"] == 6 and fields["npu"]["share"] == 1.0 and fields["npu"]["cpu_ops"] == []
        assert 0 < fields["sram_bytes"] < 512 * 1024 and fields["npu_estimate"]["cycles"] > 0
        assert fields["npu_estimate"]["clock_mhz"] == 500 and "not a measurement" in fields["npu_estimate"]["is"]
        assert "c_array" not in fields and "compiled" not in fields  # not a build's artifact: nothing written beside it

