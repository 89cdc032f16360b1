"""The ethos-u target with the real Vela compiler: the rows of a build beside its cpu and mcu rows
(operators on the NPU, SRAM and flash against the profile, the estimate never a latency, the
compiled model and its C array), `edgekit check` on its budgets, operators Vela leaves to the
CPU (named, with the reason and a fix), a file Vela cannot compile, `edgekit bench`, profiles."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.targets.profiles import load_profile
from edgekit.variant import Variant
from tests.targets.conftest import profile_target, refused_profile
from tests.targets.tflm_compile import build_and_run, compiler, header_adds, resolver_count

pytest.importorskip("ethosu.vela", reason="Vela is not installed: pip install -e '.[ethos-u]'")

SPEC = SimpleNamespace(warmup=1, runs=3, min_time_s=0.0, threads=1, rounds=1)


def _row(built, row_id):
    return next(row for row in built.results["rows"] if row["id"] == row_id)


def test_ethos_u_rows_sit_beside_cpu_and_mcu_rows_with_vela_figures(built):
    from edgekit.targets.vela import model_ops

    host, mcu, npu = (_row(built, f"tflite-int8@{t}") for t in ("cpu", "m4", "npu"))
    assert [r["target"] for r in built.results["rows"]].index("npu") > [r["target"] for r in built.results["rows"]].index("m4")
    assert npu["status"] == "ok", npu["reason"]
    # the int8 artifact's metrics, and no latency: the estimate never stands in for one
    assert npu["metrics"] == host["metrics"] and "same integer arithmetic" in npu["metrics_are"]
    assert npu["latency_ms"] is None and npu["speedup_vs_baseline"] is None and mcu["latency_ms"]["p50"] > 0
    estimate = npu["npu_estimate"]
    assert estimate["clock_mhz"] == 250 and estimate["cycles"] > 0 and "not a measurement" in estimate["is"]
    assert estimate["ms"] == pytest.approx(estimate["cycles"] / 250e3, rel=0.01)
    assert any(note.startswith("Vela's estimate, not measured") for note in npu["notes"])
    # every operator of the MLP on the NPU: the compiled model holds nothing but Vela's ethos-u operator
    compiled = built.dir / npu["compiled"]["path"]
    assert compiled.name == "tflite-int8@npu.tflite" and npu["flash_bytes"] == compiled.stat().st_size
    assert npu["npu"]["share"] == 1.0 and npu["npu"]["on_npu"] == npu["npu"]["operators"] == len(mcu["ops"]) + 1
    assert {op["op"] for op in model_ops(compiled.read_bytes())} == {"CUSTOM:ethos-u"}
    sram, flash = npu["memory_limits"]
    assert sram["value"] == npu["sram_bytes"] > 0 and sram["limit"] == 256 * 1024 and flash["value"] == npu["flash_bytes"]
    assert built.results["targets"]["npu"]["compiler"].startswith("vela ") and "estimate" in built.results["targets"]["npu"]["latency"]
    # 16-bit activations compile too; the host's rows are as they always were
    assert _row(built, "tflite-int16x8@npu")["status"] == "ok"
    assert not {"npu", "npu_estimate", "compiled", "sram_bytes"} & set(host)


@pytest.mark.skipif(compiler() is None, reason="no C++ compiler (g++ or clang++)")
def test_the_compiled_models_c_array_registers_the_ethos_u_operator(built):
    npu = _row(built, "tflite-int8@npu")
    header, source = built.dir / npu["c_array"]["header"], built.dir / npu["c_array"]["source"]
    assert header_adds(header) == ["AddEthosU"] and resolver_count(header) == 1
    assert f"tflite_int8_npu_sram_bytes = {npu['sram_bytes']};" in header.read_text()
    ran = build_and_run([header], [source], header.parent)["tflite_int8_npu"]
    assert ran == {"status": 0, "length": npu["flash_bytes"], "registered": ["AddEthosU"]}


def test_check_judges_sram_and_flash_as_for_mcu_rows(built):
    from edgekit.check.budgets import CheckSpec
    from edgekit.check.gate import compare

    outcomes = compare(built.results, CheckSpec())
    mine = {(o.row, o.budget): o.result for o in outcomes if o.row.startswith("tflite-int8@npu") and "bytes on" in o.budget}
    assert mine == {("tflite-int8@npu", "SRAM bytes on npu"): "pass", ("tflite-int8@npu", "flash bytes on npu"): "pass",
                    ("tflite-int8@npu-tiny", "SRAM bytes on npu-tiny"): "fail",
                    ("tflite-int8@npu-tiny", "flash bytes on npu-tiny"): "fail"}
    result = CliRunner().invoke(cli, ["check", str(built.dir / "results.json")])
    assert result.exit_code == 1 and "SRAM bytes on npu-tiny" in result.output
    assert any("does not fit npu-tiny" in note for note in _row(built, "tflite-int8@npu-tiny")["notes"])


@pytest.fixture(scope="module")
def u55(tmp_path_factory):
    return profile_target(tmp_path_factory.mktemp("ethos-u-profile"), "u55",
                          "kind: ethos-u\naccelerator: ethos-u55-128\nsram_kb: 256\nflash_kb: 1024\n")


def test_operators_vela_leaves_to_the_cpu_are_named_with_the_reason_and_fix(u55, unsupported_ops_int8):
    path = unsupported_ops_int8
    m = u55.measure(Variant(format="tflite", precision="int8", path=path), SPEC, [])
    assert m.status == "ok", m.reason
    fields = m.settings["row_fields"]
    cpu = {op["op"]: op for op in fields["npu"]["cpu_ops"]}
    assert set(cpu) == {"TOPK_V2", "REDUCE_PROD"} and fields["npu"]["on_npu"] == fields["npu"]["operators"] - 2
    assert cpu["TOPK_V2"]["reason"] == "Unsupported opType" and "application side" in cpu["TOPK_V2"]["fix"]
    assert "Prod" in cpu["REDUCE_PROD"]["output"] and "sum or mean" in cpu["REDUCE_PROD"]["fix"]
    assert any("TOPK_V2" in note and "stays on the CPU" in note for note in fields["notes"])
    assert any("TFLite Micro has no kernel for TOPK_V2, REDUCE_PROD" in note for note in fields["notes"])
    # the compiled model's resolver: the NPU's operator and the CPU's own, none TFLM lacks
    resolver = fields["c_array"]["op_resolver"]
    assert resolver["adds"] == ["AddEthosU"] and resolver["unknown"] == ["TOPK_V2", "REDUCE_PROD"]


def test_a_float_model_made_by_others_stays_on_the_cpu_op_by_op(u55):
    """The sine model inside the tflite-micro wheel (float, three FULLY_CONNECTED with fused
    ReLUs, which Vela warns about as RELU operators): each of its operators named with the reason
    about its own tensor."""
    tflite_micro = pytest.importorskip("tflite_micro")
    sine = Path(tflite_micro.__file__).parent / "python" / "tflite_micro" / "sine_float.tflite"
    m = u55.measure(Variant(format="tflite", precision="-", model="sine_float", path=sine), SPEC, [])
    assert m.status == "ok", m.reason
    npu = m.settings["row_fields"]["npu"]
    assert (npu["operators"], npu["on_npu"], npu["share"]) == (3, 0, 0.0)
    for op in npu["cpu_ops"]:
        assert op["op"] == "FULLY_CONNECTED" and "Float32" in op["reason"] and "full-integer" in op["fix"]
        assert op["output"].split(";")[0] in op["reason"] or op["output"] == "StatefulPartitionedCall:0"
    assert len({op["reason"] for op in npu["cpu_ops"]}) == 3


def test_a_file_vela_cannot_compile_fails_its_row_in_one_line(u55, tmp_path):
    bad = tmp_path / "tflite-int8.tflite"
    bad.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) * 4)
    m = u55.measure(Variant(format="tflite", precision="int8", path=bad), SPEC, [])
    assert m.status == "failed" and "\n" not in m.reason and "tflite-int8.tflite" in m.reason
    assert not m.latencies_ms and not (tmp_path / "tflite-int8@u55.tflite").exists()
    fp32 = Variant(format="tflite", precision="fp32", path=Path("artifacts/tflite-fp32.tflite"))
    assert not u55.supports(fp32) and "int8" in u55.unsupported_reason(fp32)


def test_bench_compiles_a_file_without_writing_beside_it(built, u55, tmp_path):
    model = tmp_path / "kws.tflite"
    model.write_bytes((built.dir / _row(built, "tflite-int8@cpu")["path"]).read_bytes())
    devices = Path(u55.profile.path).parent
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(cli, ["bench", str(model), "--target", "u55", "--devices", str(devices), "--out", str(out)])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())["rows"]
    assert row["id"] == "kws.tflite@u55" and row["status"] == "ok" and row["npu"]["share"] == 1.0
    assert row["latency_ms"] is None and row["npu_estimate"]["cycles"] > 0
    # Vela's output stays in a temporary folder: beside the model only --out and its log appear.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "bench.log", "kws.tflite"]


@pytest.mark.parametrize(("text", "expected"), [
    ("kind: ethos-u\naccelerator: ethos-u55-100\nsram_kb: 256\nflash_kb: 1024\n", "did you mean \"ethos-u55-128\""),
    ("kind: ethos-u\naccelerator: ethos-u55-128\nsystem_config: Fast\nsram_kb: 256\nflash_kb: 1024\n",
     "system_config: 'Fast' is not in"),
    ("kind: ethos-u\naccelerator: ethos-u85-256\nmemory_mode: Sram\nsram_kb: 256\nflash_kb: 1024\n", "Dedicated_Sram"),
    ("kind: ethos-u\naccelerator: ethos-u55-128\nconfig_file: mine.ini\nsram_kb: 256\nflash_kb: 1024\n", "mine.ini"),
    ("kind: ethos-u\naccelerator: ethos-u55-128\nclock_mhz: -5\nsram_kb: 256\nflash_kb: 1024\n", "clock_mhz"),
    ("kind: ethos-u\naccelerator: ethos-u55-128\nsram_kb: .nan\nflash_kb: 1024\n", "sram_kb"),
    ("kind: ethos-u\naccelerator: ethos-u55-128\nsram_kb: 256\n", "flash_kb"),
])
def test_bad_profiles_are_one_line_naming_the_field(tmp_path, text, expected):
    assert expected in refused_profile(tmp_path, textwrap.dedent(text))


def test_a_config_file_of_ones_own_with_defaults_per_family(tmp_path):
    (tmp_path / "board.ini").write_text("[System_Config.Board]\ncore_clock=300e6\naxi0_port=Sram\naxi1_port=Sram\n"
                                        "Sram_clock_scale=1.0\n\n[Memory_Mode.AllSram]\nconst_mem_area=Axi0\n"
                                        "arena_mem_area=Axi0\ncache_mem_area=Axi0\n")
    path = tmp_path / "board.yaml"
    path.write_text("kind: ethos-u\naccelerator: ethos-u65-256\nconfig_file: board.ini\nsystem_config: Board\n"
                    "memory_mode: AllSram\nsram_kb: 256\nflash_kb: 1024\n")
    profile = load_profile(path)
    assert profile.config_file == tmp_path / "board.ini" and profile.system_config == "Board"
    path.write_text("kind: ethos-u\naccelerator: ethos-u85-256\nsram_kb: 256\nflash_kb: 1024\n")
    assert (load_profile(path).system_config, load_profile(path).memory_mode) == ("Ethos_U85_SYS_DRAM_Mid",
                                                                                  "Dedicated_Sram_384KB")
