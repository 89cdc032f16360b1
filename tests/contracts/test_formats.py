"""The contract every format must meet, written once (NNCF-style template tests).

Each format subclasses FormatContract and sets a few hooks; the checks convert a tiny real
model, load the artifact back in the format's real runtime, and compare with Keras.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.bench.stats import time_session
from edgekit.formats import FORMATS


class FormatContract:
    format_name: str
    #: fp32 artifacts must match Keras outputs (softmax probabilities) this closely.
    fp32_atol: float = 1e-4
    #: int8 must keep this share of the fp32 top-1 decisions on digits.
    int8_min_agreement: float = 0.9

    @pytest.fixture(scope="class")
    def converted(self, tiny_model, digits, tmp_path_factory):
        fmt = FORMATS[self.format_name]
        folder = tmp_path_factory.mktemp(self.format_name)
        x, _ = digits
        paths, settings = {}, {}
        for precision in fmt.precisions:
            if precision == "int8-fast":  # the int8 converter's artifact again: tests/convert/test_fast.py
                continue
            paths[precision] = folder / f"model-{precision}{fmt.suffix}"
            settings[precision] = fmt.load_converter()(tiny_model, paths[precision], precision, x[:100])
        return fmt, paths, settings

    def _session(self, fmt, path):
        return fmt.load_runtime()(path, 1)

    def test_fp32_matches_keras(self, converted, tiny_model, digits):
        fmt, paths, settings = converted
        x, _ = digits
        session = self._session(fmt, paths["fp32"])
        outputs = session.predict(x[1400:1600])
        expected = tiny_model.predict(x[1400:1600], verbose=0)
        assert outputs.shape == expected.shape
        np.testing.assert_allclose(outputs, expected, atol=self.fp32_atol)
        assert np.mean(outputs.argmax(1) == expected.argmax(1)) >= 0.995
        assert session.runtime and isinstance(settings["fp32"], dict)

    def test_int8_runs_close_to_fp32(self, converted, tiny_model, digits):
        fmt, paths, settings = converted
        x, y = digits
        session = self._session(fmt, paths["int8"])
        outputs = session.predict(x[1400:])
        expected = tiny_model.predict(x[1400:], verbose=0)
        assert outputs.dtype == np.float32 and outputs.shape == expected.shape
        assert np.mean(outputs.argmax(1) == expected.argmax(1)) >= self.int8_min_agreement
        keras_acc = np.mean(expected.argmax(1) == y[1400:])
        assert np.mean(outputs.argmax(1) == y[1400:]) >= keras_acc - 0.03

    def test_int8_artifact_is_smaller(self, converted):
        _, paths, _ = converted
        assert _size(paths["int8"]) < _size(paths["fp32"])

    def test_session_times_batch1(self, converted, digits):
        fmt, paths, _ = converted
        latencies = time_session(self._session(fmt, paths["fp32"]), list(digits[0][:3]), warmup=1, runs=5)
        assert len(latencies) == 5 and min(latencies) > 0

    def test_unknown_precision_is_refused(self, tiny_model, digits, tmp_path):
        fmt = FORMATS[self.format_name]
        with pytest.raises(ValueError, match="precision"):
            fmt.load_converter()(tiny_model, tmp_path / f"m{fmt.suffix}", "int3", digits[0][:10])

    def test_keras3_model_converts_fp32(self, digits, tmp_path):
        import keras  # Keras 3, what tf.keras is in TensorFlow 2.16+

        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
        fmt = FORMATS[self.format_name]
        path = tmp_path / f"k3{fmt.suffix}"
        fmt.load_converter()(model, path, "fp32", digits[0][:10])
        outputs = self._session(fmt, path).predict(digits[0][:20])
        np.testing.assert_allclose(outputs, np.asarray(model(digits[0][:20])), atol=self.fp32_atol)


def _size(path):
    return sum(p.stat().st_size for p in path.parent.glob(path.stem + ".*"))


class TestTFLite(FormatContract):
    format_name = "tflite"

    def test_int8_model_has_int8_io(self, converted):
        fmt, paths, settings = converted
        session = self._session(fmt, paths["int8"])
        assert session.input["dtype"] == np.int8 and session.output["dtype"] == np.int8
        assert settings["int8"]["io_type"] == "int8"


class TestONNX(FormatContract):
    format_name = "onnx"

    def test_int8_has_quantized_ops(self, converted):
        import onnx

        _, paths, settings = converted
        ops = {node.op_type for node in onnx.load(paths["int8"]).graph.node}
        assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
        assert settings["int8"]["activation_type"] == "uint8"

    def test_bad_option_is_refused(self, tiny_model, digits, tmp_path):
        from edgekit.convert.onnx import convert

        with pytest.raises(ValueError, match="quant_format"):
            convert(tiny_model, tmp_path / "m.onnx", "int8", digits[0][:10], {"quant_format": "QDQQ"})


class TestOpenVINO(FormatContract):
    format_name = "openvino"

    def test_ir_is_a_pair_and_fp32_stays_fp32(self, converted):
        fmt, paths, _ = converted
        assert all(f.exists() for f in fmt.files(paths["fp32"]))
        session = self._session(fmt, paths["fp32"])
        # The CPU plugin may default to bf16 on AVX-512 BF16 / AMX machines; edgekit pins f32.
        assert session.settings["inference_precision"] == "f32"

    def test_int8_ir_has_fake_quantize(self, converted):
        _, paths, settings = converted
        assert "FakeQuantize" in paths["int8"].read_text()
        assert settings["int8"]["preset"] == "performance"
