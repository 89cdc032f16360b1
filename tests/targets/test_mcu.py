"""The mcu target with the real tflite-micro wheel: a build with two microcontroller profiles
(rows, arena, flash, C array, agreement with LiteRT, `edgekit check` budgets), what TFLM
refuses (missing ops, by name) or crashes on (that row fails, nothing else), the profile schema
and the generated keyword set."""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.targets import resolve
from edgekit.variant import Variant
from tests.targets.conftest import profile_target, refused_profile
from tests.targets.tflm_compile import build_and_run, compiler, header_adds, real_includes, resolver_count, syntax_check

SPEC = SimpleNamespace(warmup=1, runs=3, min_time_s=0.0, threads=1, rounds=1)


def _row(built, row_id):
    return next(row for row in built.results["rows"] if row["id"] == row_id)


def test_mcu_rows_carry_arena_flash_agreement_and_host_time(built):
    host, m4 = _row(built, "tflite-int8@cpu"), _row(built, "tflite-int8@m4")
    assert m4["status"] == "ok", m4["reason"]
    assert m4["flash_bytes"] == m4["size_bytes"] == (built.dir / m4["path"]).stat().st_size
    assert 500 < m4["arena_bytes"] < 64 * 1024 and m4["arena_bytes"] % 16 == 0
    assert m4["arena_bytes"] >= m4["settings"]["arena_reported_bytes"]
    assert "FULLY_CONNECTED" in m4["ops"]
    # metrics from TFLM's own outputs (the whole test split), as close to LiteRT's on the same file as int8 kernels get
    assert m4["agreement"]["samples"] > 300
    assert m4["agreement"]["top1"] >= 0.97 and abs(m4["metrics"]["accuracy"] - host["metrics"]["accuracy"]) <= 0.02
    assert m4["runtime"].startswith("tflite_micro") and m4["settings"]["delegate"].startswith("none")
    assert "host time" in m4["latency_is"] and any("host time" in note for note in m4["notes"])
    assert "host time" in built.results["targets"]["m4"]["latency"]
    assert "row_fields" not in m4["settings"]
    ram, flash = m4["memory_limits"]
    assert ram["value"] == -(-int(m4["arena_bytes"] * 1.25) // 16) * 16 and ram["limit"] == 256 * 1024
    assert flash["value"] == m4["flash_bytes"] and "not included" in flash["what"]
    wide = _row(built, "tflite-int16x8@m4")  # 16-bit activations: TFLM has kernels for these ops too
    assert wide["status"] == "ok" and wide["agreement"]["top1"] >= 0.97 and wide["arena_bytes"] > m4["arena_bytes"]
    # the other rows are as they always were: none of the mcu fields
    assert not {"arena_bytes", "flash_bytes", "memory_limits", "c_array", "agreement"} & set(host)


def test_c_array_is_the_model_aligned_with_the_arena_and_survives_the_build(built):
    m4 = _row(built, "tflite-int8@m4")
    source, header = built.dir / m4["c_array"]["source"], built.dir / m4["c_array"]["header"]
    assert source.name == "tflite-int8@m4.cc" and header.name == "tflite-int8@m4.h"
    text = source.read_text()
    assert "alignas(16) const unsigned char tflite_int8_m4_model[]" in text
    data = bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", text))
    assert data == (built.dir / m4["path"]).read_bytes()
    needed = m4["memory_limits"][0]["value"]
    assert f"tflite_int8_m4_arena_bytes = {needed};" in header.read_text()
    assert f"tflite_int8_m4_arena_measured_bytes = {m4['arena_bytes']};" in header.read_text()


@pytest.mark.skipif(compiler() is None, reason="no C++ compiler (g++ or clang++)")
@pytest.mark.parametrize("row_id", ["tflite-int8@m4", "tflite-int16x8@m4"])
def test_op_resolver_is_exactly_the_models_ops_and_the_files_compile_as_they_are(built, row_id):
    """The header's resolver against the model's own op list (read by TFLite Micro's schema):
    one Add per operator type, N equal to their number; compiled, linked and run (the stand-in
    header, or TFLite Micro's own with EDGEKIT_TFLM_INCLUDE), every Add returns kTfLiteOk."""
    from edgekit.targets.c_source import add_method
    from edgekit.targets.mcu_run import model_ops

    row = _row(built, row_id)
    source, header = built.dir / row["c_array"]["source"], built.dir / row["c_array"]["header"]
    ops = model_ops((built.dir / row["path"]).read_bytes())
    assert ops == row["ops"] and "FULLY_CONNECTED" in ops
    assert header_adds(header) == [add_method(op) for op in ops] == row["c_array"]["op_resolver"]["adds"]
    assert resolver_count(header) == len(ops) == len(set(header_adds(header)))
    ran = build_and_run([header], [source], header.parent)[row["c_array"]["symbol"].removesuffix("_model")]
    assert ran == {"status": 0, "length": row["flash_bytes"], "registered": header_adds(header)}
    if includes := real_includes():
        done = syntax_check(source, includes)
        assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.skipif(compiler() is None, reason="no C++ compiler (g++ or clang++)")
def test_profiles_with_hostile_names_give_files_that_compile(built, tmp_path):
    """Profile file names reach the C files as device names: a newline once put `#error injected`
    on a line of its own and a quote broke the #include. Now both compile, side by side."""
    devices, run = tmp_path / "devices", tmp_path / "run"
    devices.mkdir()
    names = ["m\n#error injected", 'q"uote\\']
    for name in names:
        (devices / f"{name}.yaml").write_text("kind: mcu\nram_kb: 256\nflash_kb: 1024\n")
    (run / "artifacts").mkdir(parents=True)
    model = run / "artifacts" / "tflite-int8.tflite"
    shutil.copyfile(built.dir / _row(built, "tflite-int8@m4")["path"], model)
    x = np.zeros((2, 8, 8, 1), np.float32)
    fields = []
    for target in resolve(names, [devices]).values():
        m = target.measure(Variant(format="tflite", precision="int8", path=model), SPEC, list(x))
        assert m.status == "ok", m.reason
        fields.append(m.settings["row_fields"]["c_array"])
    headers, sources = [run / f["header"] for f in fields], [run / f["source"] for f in fields]
    for path in [*headers, *sources]:
        assert "\n#error" not in path.read_text() and path.name.startswith("tflite-int8@")
    ran = build_and_run(headers, sources, run / "artifacts")
    assert [r["status"] for r in ran.values()] == [0, 0] and {r["length"] for r in ran.values()} == {model.stat().st_size}


def test_stale_artifacts_go_but_c_arrays_of_kept_variants_stay(built, tmp_path):
    from edgekit.pipeline.build import _remove_stale_artifacts

    run = tmp_path / "run"
    shutil.copytree(built.dir / "artifacts", run / "artifacts")
    (run / "artifacts" / "old-int8.tflite").write_bytes(b"x")
    (run / "artifacts" / "old-int8@m4.cc").write_text("x")
    kept = Variant(format="tflite", precision="int8", path=run / "artifacts" / "tflite-int8.tflite")
    _remove_stale_artifacts(run, [kept])
    names = [p.name for p in (run / "artifacts").iterdir()]
    contracts = [name for name in names if name.endswith(".contract.json")]  # each row's input contract
    assert contracts and all(name.startswith("tflite-int8@") for name in contracts)
    assert sorted(set(names) - set(contracts)) == [
        "tflite-int8.tflite", "tflite-int8@m4.cc", "tflite-int8@m4.h", "tflite-int8@npu-tiny.cc", "tflite-int8@npu-tiny.h",
        "tflite-int8@npu-tiny.tflite", "tflite-int8@npu.cc", "tflite-int8@npu.h", "tflite-int8@npu.tflite",
        "tflite-int8@tiny.cc", "tflite-int8@tiny.h"]


def test_check_fails_the_row_that_does_not_fit_and_passes_the_one_that_does(built, tmp_path):
    result = CliRunner().invoke(cli, ["check", str(built.dir / "results.json")])
    assert result.exit_code == 1, result.output
    assert "RAM bytes on tiny" in result.output and "flash bytes on tiny" in result.output
    from edgekit.check.budgets import CheckSpec
    from edgekit.check.gate import compare

    outcomes = compare(built.results, CheckSpec())
    mine = {(o.row, o.budget): o.result for o in outcomes if "bytes on" in o.budget and o.row.startswith("tflite-int8@")
            and "npu" not in o.row}  # the ethos-u rows: tests/targets/test_ethos_u.py
    assert mine == {("tflite-int8@m4", "RAM bytes on m4"): "pass", ("tflite-int8@m4", "flash bytes on m4"): "pass",
                    ("tflite-int8@tiny", "RAM bytes on tiny"): "fail", ("tflite-int8@tiny", "flash bytes on tiny"): "fail"}
    off = CheckSpec.model_validate({"rules": [{"rows": "*@tiny", "device_limits": False}]})
    assert not [o for o in compare(built.results, off) if o.row.endswith("@tiny") and "bytes on" in o.budget]


@pytest.fixture(scope="module")
def m4(tmp_path_factory):
    return profile_target(tmp_path_factory.mktemp("mcu-profile"), "m4", "kind: mcu\nram_kb: 256\nflash_kb: 1024\n")


def test_ops_tflm_lacks_fail_the_row_by_name_with_the_fix(m4, unsupported_ops_int8):
    variant = Variant(format="tflite", precision="int8", path=unsupported_ops_int8)
    m = m4.measure(variant, SPEC, list(np.zeros((2, 16), np.float32)))
    assert m.status == "failed" and "\n" not in m.reason
    assert "no kernel for TOPK_V2, REDUCE_PROD" in m.reason and "fix: TOPK_V2:" in m.reason and "REDUCE_PROD:" in m.reason
    assert not list(unsupported_ops_int8.parent.glob("*@m4.*"))  # no C array of a model TFLite Micro cannot run


def test_a_model_that_crashes_tflm_fails_its_row_only(built, m4, tmp_path):
    import flatbuffers
    from tflite_micro.python.tflite_micro import runtime

    good = built.dir / _row(built, "tflite-int8@m4")["path"]
    model = runtime.convert_bytearray_to_object(bytearray(good.read_bytes()))
    for op in model.subgraphs[0].operators:  # every op's weights: a tensor index far past the last tensor
        if len(op.inputs) > 1:
            op.inputs[1] = 10 ** 6
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    bad = tmp_path / "tflite-int8.tflite"
    bad.write_bytes(builder.Output())
    x = np.zeros((2, 8, 8, 1), np.float32)
    crashed = m4.measure(Variant(format="tflite", precision="int8", path=bad), SPEC, list(x))
    assert crashed.status == "failed" and "TFLite Micro crashed" in crashed.reason and "signal" in crashed.reason
    assert m4.measure(Variant(format="tflite", precision="int8", path=good), SPEC, list(x)).status == "ok"


def test_fp32_is_not_the_targets_to_run(m4):
    variant = Variant(format="tflite", precision="fp32", path=Path("artifacts/tflite-fp32.tflite"))
    assert not m4.supports(variant) and "m4" in m4.unsupported_reason(variant)
    assert not m4.supports(Variant(format="onnx", precision="int8"))


@pytest.mark.parametrize(("text", "expected"), [
    ("kind: mcu\nflash_kb: 1024\n", "ram_kb"),
    ("kind: mcu\nram_kb: -3\nflash_kb: 1024\n", "ram_kb"),
    ("kind: mcu\nram_kb: 256\nflash_kb: 1024\nram: 3\n", "unknown key"),
    ("kind: mcu\nram_kb: 256\nflash_kb: 1024\narena_margin: .nan\n", "arena_margin"),
])
def test_bad_profiles_are_one_line_naming_the_field(tmp_path, text, expected):
    assert expected in refused_profile(tmp_path, textwrap.dedent(text))


def test_keyword_frames_are_deterministic_mlperf_shaped_and_balanced():
    from edgekit.data.builtins import BUILTINS

    (a, names), (b, _) = BUILTINS["keywords49x10"].load(None), BUILTINS["keywords49x10"].load(None)
    assert a["x"].shape == (2400, 49, 10, 1) and a["x"].dtype == np.float32 and len(names) == 12
    np.testing.assert_array_equal(a["x"], b["x"])
    assert np.bincount(a["y"]).tolist() == [200] * 12
