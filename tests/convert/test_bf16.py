"""OpenVINO bf16: the fp32 IR run at the CPU plugin's native bf16, where the CPU has it.

On a CPU with AVX-512 BF16 or AMX the openvino rows gain a bf16 row by themselves where a speed
probe finds bf16 as fast as f32 (edgekit.convert.auto: AMX, not vdpbf16ps alone); a recipe
that lists bf16 on a CPU without them gets a skipped row with a one-line reason (recipes
travel between machines); ``edgekit formats`` says which precisions run natively here.
"""

from __future__ import annotations

import filecmp
import json
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit import formats
from edgekit.cli import cli
from edgekit.formats import FORMATS
from tests.conftest import TINY_RECIPE, TINY_UNPROFILED

OPENVINO = FORMATS["openvino"]
NATIVE = OPENVINO.skip_reason("bf16") is None
needs_bf16 = pytest.mark.skipif(not NATIVE, reason="this CPU has neither avx512_bf16 nor amx_bf16")


def test_the_decision_reads_the_cpu_flags():
    assert OPENVINO.skip_reason("bf16", ["avx2", "avx512_bf16"]) is None
    assert OPENVINO.skip_reason("bf16", ["amx_tile", "amx_bf16"]) is None
    reason = OPENVINO.skip_reason("bf16", ["avx2", "avx512_vnni"])
    assert reason and "avx512_bf16 or amx_bf16" in reason and "\n" not in reason
    assert OPENVINO.skip_reason("fp32", []) is None and OPENVINO.skip_reason("int8", []) is None
    assert OPENVINO.native_precisions(["avx2"]) == ("fp32", "int8", "int8-mixed", "int8-fast")
    assert OPENVINO.native_precisions(["amx_bf16"]) == ("fp32", "bf16", "int8", "int8-mixed", "int8-fast")


def test_bf16_is_added_after_fp32_only_where_native_and_wanted():
    options = formats.OpenVINOOptions()
    assert OPENVINO.precisions_for(["fp32", "int8"], options, ["amx_bf16"]) == ["fp32", "bf16", "int8"]
    assert OPENVINO.precisions_for(["fp32", "int8"], options, ["avx2"]) == ["fp32", "int8"]
    assert OPENVINO.precisions_for(["int8"], options, ["amx_bf16"]) == ["int8"]  # bf16 is fp32's twin
    assert OPENVINO.precisions_for(["fp32"], formats.OpenVINOOptions(auto_bf16=False), ["amx_bf16"]) == ["fp32"]
    # Listed on purpose: kept (and skipped later) whatever the CPU.
    assert OPENVINO.precisions_for(["fp32", "bf16"], options, ["avx2"]) == ["fp32", "bf16"]
    assert FORMATS["tflite"].precisions_for(["fp32", "int8"], None, ["amx_bf16"]) == ["fp32", "int8"]


def _recipe(write_recipe, extra: str):
    from edgekit.recipe.schema import load_recipe

    return load_recipe(write_recipe(TINY_RECIPE.replace("quantize:\n", f"quantize:\n{extra}") +
                                    "export: {formats: [tflite, openvino]}\n"))


def _fast_bf16(monkeypatch, added: bool = True) -> None:
    """This machine's bf16 speed probe, answered: added (or not) whatever the CPU under the tests."""
    from edgekit.convert import auto

    monkeypatch.setattr(auto, "decide", lambda fmt, precision: {
        "format": fmt.name, "precision": precision, "added": added, "probe": None,
        "why": "added: as fast as f32 (the test's answer)" if added else "not added: slower (the test's answer)"})


def test_the_plan_has_the_bf16_row_where_native_and_a_skipped_one_where_listed(write_recipe, monkeypatch):
    from edgekit.convert.stage import Exporter
    from edgekit.pipeline.build import plan

    _fast_bf16(monkeypatch)
    recipe = _recipe(write_recipe, "  precisions: [fp32, bf16, int8]\n")
    monkeypatch.setattr(formats, "host_isa", lambda: ("avx2", "avx512_vnni"))
    rows, not_produced = plan(recipe)
    assert [row.id for row in rows] == ["keras-fp32@cpu", "tflite-fp32@cpu", "tflite-int8@cpu", "openvino-fp32@cpu",
                                        "openvino-bf16@cpu", "openvino-int8@cpu"]
    assert [(item["format"], item["precision"]) for item in not_produced] == [("tflite", "bf16")]
    # The exporter makes it a skipped row with the reason, and starts nothing for it.
    started = []
    exporter = Exporter(SimpleNamespace(recipe=recipe), start=lambda fmt, p, *rest: started.append((fmt.name, p)) or p)
    handles = exporter.export(None, "base", None, False, "key")
    skipped = [h.result() for h in handles if not isinstance(h, str)]
    assert ("openvino", "bf16") not in started and [(v.format, v.precision, v.status) for v in skipped] == [
        ("openvino", "bf16", "skipped")]
    assert "avx512_bf16 or amx_bf16" in skipped[0].reason
    # Not listed, not native: no bf16 row at all.
    rows, _ = plan(_recipe(write_recipe, ""))
    assert "openvino-bf16@cpu" not in [row.id for row in rows]
    # Native: added by itself, right after fp32.
    monkeypatch.setattr(formats, "host_isa", lambda: ("avx512_bf16",))
    recipe = _recipe(write_recipe, "")
    rows, _ = plan(recipe)
    assert [row.id for row in rows][3:] == ["openvino-fp32@cpu", "openvino-bf16@cpu", "openvino-int8@cpu"]
    # Native but slower than f32 here (the speed probe): not added, and the exporter says why.
    _fast_bf16(monkeypatch, added=False)
    exporter = Exporter(SimpleNamespace(recipe=recipe))
    assert ("openvino", "bf16") not in [(f.name, p) for f, p in exporter.combinations("base", False)]
    assert [(d["precision"], d["added"]) for d in exporter.auto_precisions] == [("bf16", False)]
    assert exporter.auto_precisions[0]["why"].startswith("not added")
    _fast_bf16(monkeypatch)
    # ... for the base model only: a compressed model gets bf16 where its precisions list it.
    exporter = Exporter(SimpleNamespace(recipe=recipe))
    assert [(f.name, p) for f, p in exporter.combinations("pruned80", False)] == [
        ("tflite", "fp32"), ("tflite", "int8"), ("openvino", "fp32"), ("openvino", "int8")]
    assert ("openvino", "bf16") in [(f.name, p) for f, p in exporter.combinations("pruned80", False, ["fp32", "bf16"])]


@needs_bf16
def test_bf16_ir_is_the_fp32_ir_marked_and_runs_at_bf16(tiny_model, digits, tmp_path):
    from edgekit.convert.openvino import convert
    from edgekit.runtimes.openvino import open_session

    x, y = digits
    settings = convert(tiny_model, tmp_path / "bf16.xml", "bf16", x[:10], {})
    convert(tiny_model, tmp_path / "fp32.xml", "fp32", x[:10], {})
    assert settings["inference_precision"] == "bf16"
    assert filecmp.cmp(tmp_path / "bf16.bin", tmp_path / "fp32.bin", shallow=False)  # fp32 weights on disk
    bf16, fp32 = open_session(tmp_path / "bf16.xml", 1), open_session(tmp_path / "fp32.xml", 1)
    assert bf16.settings["inference_precision"] == "bf16" and fp32.settings["inference_precision"] == "f32"
    a, b = bf16.predict(x[1400:]), fp32.predict(x[1400:])
    assert not np.array_equal(a, b)  # really computed at another precision
    # bf16 keeps 8 bits of mantissa: probabilities move by ~1e-2, predictions hardly at all.
    assert np.abs(a - b).max() < 0.1 and np.mean(a.argmax(1) == b.argmax(1)) > 0.97


def test_a_bf16_ir_refuses_a_cpu_without_native_bf16(tiny_model, digits, tmp_path, monkeypatch):
    """Where the plugin has no BF16 (a device), the session says so instead of timing f32 as bf16."""
    from edgekit.convert.openvino import convert
    from edgekit.runtimes import openvino as session_module

    convert(tiny_model, tmp_path / "bf16.xml", "bf16", digits[0][:10], {})
    session_module.disable_telemetry()
    import openvino as ov

    real = ov.Core.get_property

    def no_bf16(self, *args):
        value = real(self, *args)
        return [c for c in value if c != "BF16"] if args[-1] == "OPTIMIZATION_CAPABILITIES" else value

    monkeypatch.setattr(ov.Core, "get_property", no_bf16)
    with pytest.raises(RuntimeError, match="no native bf16"):
        session_module.open_session(tmp_path / "bf16.xml", 1)


@needs_bf16
def test_build_has_an_openvino_bf16_row_close_to_fp32(write_recipe, tmp_path):
    recipe = write_recipe(TINY_UNPROFILED + "export: {formats: [openvino]}\n")
    result = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    rows = {row["id"]: row for row in results["rows"]}
    # native here; added where this CPU's speed probe runs bf16 as fast as f32 (AMX), and said why
    [decision] = results["auto_precisions"]
    assert decision["format"] == "openvino" and decision["precision"] == "bf16" and decision["probe"]["ratio"] > 0
    assert decision["why"].startswith("added" if decision["added"] else "not added")
    if not decision["added"]:
        assert list(rows) == ["keras-fp32@cpu", "openvino-fp32@cpu", "openvino-int8@cpu"]
        return
    assert list(rows) == ["keras-fp32@cpu", "openvino-fp32@cpu", "openvino-bf16@cpu", "openvino-int8@cpu"]
    assert any(note.startswith("bf16 row added: bf16 ran") for note in rows["openvino-bf16@cpu"]["notes"])
    bf16, fp32 = rows["openvino-bf16@cpu"], rows["openvino-fp32@cpu"]
    assert bf16["status"] == "ok" and bf16["precision"] == "bf16" and bf16["format"] == "openvino"
    assert bf16["settings"]["inference_precision"] == "bf16" and fp32["settings"]["inference_precision"] == "f32"
    assert bf16["metrics"]["accuracy"] == pytest.approx(fp32["metrics"]["accuracy"], abs=0.02)
    assert bf16["latency_ms"]["p50"] > 0
    assert "openvino-bf16@cpu" in result.output


def test_a_listed_bf16_on_a_cpu_without_it_is_a_skipped_row(write_recipe, tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "host_isa", lambda: ("avx2",))
    recipe = write_recipe(TINY_UNPROFILED.replace("quantize:\n", "quantize:\n  precisions: [fp32, bf16]\n")
                          + "export: {formats: [openvino]}\n")
    result = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output  # skipped is not failed
    rows = {row["id"]: row for row in json.loads((tmp_path / "run" / "results.json").read_text())["rows"]}
    assert list(rows) == ["keras-fp32@cpu", "openvino-fp32@cpu", "openvino-bf16@cpu"]
    assert rows["openvino-bf16@cpu"]["status"] == "skipped"
    assert "avx512_bf16 or amx_bf16" in rows["openvino-bf16@cpu"]["reason"]
    assert rows["openvino-fp32@cpu"]["status"] == "ok"


def test_formats_says_which_precisions_run_natively_here(monkeypatch):
    result = CliRunner().invoke(cli, ["formats"])
    assert result.exit_code == 0
    assert "fp32,bf16,int8" in result.output
    if NATIVE:
        assert "bf16: native here" in result.output and "runs natively: openvino bf16" in result.output
    monkeypatch.setattr(formats, "host_isa", lambda: ("avx2",))
    result = CliRunner().invoke(cli, ["formats"])
    assert "bf16: not native here (needs avx512_bf16 or amx_bf16)" in result.output
    assert "runs natively: none of openvino bf16" in result.output
