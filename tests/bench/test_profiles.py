"""Per-op profiles, peak memory and the causes read from them, in the real runtimes on tiny models.

No timing assertions: what is asserted is where ops ran (XNNPACK or not, which kernels, which
nodes), that shares add up, that memory was measured, and which cause the words name.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.bench import profiles
from edgekit.report import causes


def _recipe(**benchmark):
    from edgekit.recipe.schema import Recipe

    return Recipe.model_validate({"name": "t", "model": {"arch": "mlp"}, "benchmark": benchmark})


def _row(row_id: str, fmt: str, precision: str, profile: dict, p50: float = 0.01) -> dict:
    """A results row carrying a profile summary, as the bench stage attaches it."""
    return {"id": row_id, "format": fmt, "precision": precision, "model": "base", "target": "cpu", "status": "ok",
            "runtime": profile.get("runtime"), "latency_ms": {"p50": p50}, "profile": profiles.summarize(profile, None)}


def _shares_add_up(profile: dict) -> None:
    units = profiles.units(profile)
    assert units and all(u["share"] is not None for u in units)
    assert sum(u["share"] for u in units) == pytest.approx(1.0, abs=0.01)


@pytest.fixture(scope="module")
def lstm_tflite(tmp_path_factory):
    """The zoo's LSTM (small) as fp32 and int8 .tflite: {precision: path}."""
    import tf_keras as keras

    from edgekit.convert import tflite
    from edgekit.models.recurrent import lstm

    keras.utils.set_random_seed(0)
    model = lstm((29, 12), 9, units=(16,))
    x = np.random.default_rng(0).normal(size=(64, 29, 12)).astype(np.float32)
    folder = tmp_path_factory.mktemp("lstm")
    paths = {}
    for precision in ("fp32", "int8"):
        paths[precision] = folder / f"lstm-{precision}.tflite"
        tflite.convert(model, paths[precision], precision, x, {})
    return paths, x[:4]


def test_litert_int8_lstm_runs_outside_xnnpack_and_the_cause_says_so(lstm_tflite):
    from edgekit.runtimes import litert

    paths, x = lstm_tflite
    found = {p: litert.profile_ops(path, 1, samples=x) for p, path in paths.items()}
    int8 = found["int8"]
    lstm_ops = [op for op in int8["ops"] if op["type"] == "UNIDIRECTIONAL_SEQUENCE_LSTM"]
    assert len(lstm_ops) == 1 and not lstm_ops[0]["accelerated"] and lstm_ops[0]["where"] == "builtin kernel"
    assert lstm_ops[0]["precision"] == "int8"
    assert any(op["accelerated"] for op in int8["ops"])  # the FULLY_CONNECTED still goes to XNNPACK
    assert int8["partitions"] >= 1
    _shares_add_up(int8)
    row = _row("tflite-int8@cpu", "tflite", "int8", int8)
    fp32 = _row("tflite-fp32@cpu", "tflite", "fp32", found["fp32"])
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in row["profile"]["not_accelerated"]["types"]
    words = causes.cause(row, fp32)
    assert words.startswith("UNIDIRECTIONAL_SEQUENCE_LSTM runs outside XNNPACK on built-in kernels: "), words
    share = next(t["share"] for t in row["profile"]["top_op_types"] if t["type"] == "UNIDIRECTIONAL_SEQUENCE_LSTM")
    assert f"{share:.0%} of time" in words


def test_litert_prefix_models_keep_the_graph_inputs_and_cut_at_a_segment(lstm_tflite):
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.runtimes import litert

    paths, _ = lstm_tflite
    prefix = litert._prefix_model(paths["int8"], [0])  # the LSTM alone
    interpreter = Interpreter(model_content=prefix)
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()
    assert [op["op_name"] for op in ops] == ["UNIDIRECTIONAL_SEQUENCE_LSTM"]
    assert list(interpreter.get_output_details()[0]["shape"])[-1] == 16  # the LSTM's own output is the output


def test_litert_int16x8_has_no_xnnpack_partition(tiny_model, digits, tmp_path):
    from edgekit.convert import tflite
    from edgekit.runtimes import litert

    path = tmp_path / "int16x8.tflite"
    tflite.convert(tiny_model, path, "int16x8", digits[0][:64], {})
    profile = litert.profile_ops(path, 1, samples=digits[0][:2])
    assert profile["partitions"] == 0
    assert profile["ops"] and not any(op["accelerated"] for op in profile["ops"])
    assert {op["precision"] for op in profile["ops"] if op["type"] == "CONV_2D"} == {"int16"}
    _shares_add_up(profile)
    words = causes.cause(_row("tflite-int16x8@cpu", "tflite", "int16x8", profile))
    assert words.startswith(f"no op runs in XNNPACK (no XNNPACK kernels for int16 activations): "
                            f"all {len(profile['ops'])} ops on built-in kernels"), words


def test_onnxruntime_int8_cnn_names_the_quantize_nodes_and_the_extra_nodes(tiny_artifacts, digits):
    from edgekit.runtimes import onnxruntime

    x = digits[0][:4]
    int8 = onnxruntime.profile_ops(tiny_artifacts["onnx", "int8"], 1, samples=x, runs=20, precision="int8")
    fp32 = onnxruntime.profile_ops(tiny_artifacts["onnx", "fp32"], 1, samples=x, runs=20, precision="fp32")
    types = [op["type"] for op in int8["ops"]]
    # What the profile shows for the small CNN: the converter's QDQ pairs are all fused into
    # QLinear kernels; one QuantizeLinear in front and one DequantizeLinear at the end remain.
    assert types[0] == "QuantizeLinear" and types[-1] == "DequantizeLinear"
    assert int8["qdq"]["nodes"] == 2 and int8["qdq"]["at_edges"] == 2 and int8["qdq"]["left_unfused"] == 0
    assert "QLinearConv" in types and int8["float_compute"]["nodes"] == 0
    assert [op["accelerated"] for op in int8["ops"] if op["type"] in onnxruntime.QDQ_OPS] == [False, False]
    assert all(op["accelerated"] for op in fp32["ops"]) and fp32["qdq"]["nodes"] == 0
    assert all(op["provider"] == "CPUExecutionProvider" for op in int8["ops"])
    _shares_add_up(int8)
    row, ref = _row("onnx-int8@cpu", "onnx", "int8", int8), _row("onnx-fp32@cpu", "onnx", "fp32", fp32)
    words = causes.cause(row, ref)
    assert "2 QuantizeLinear/DequantizeLinear node(s) at the graph edges: " in words, words
    assert f"{len(int8['ops'])} nodes executed vs {len(fp32['ops'])} in fp32" in words, words
    assert len(int8["ops"]) > len(fp32["ops"])


def test_openvino_profile_reads_exec_types_and_precisions(tiny_artifacts, digits):
    from edgekit.runtimes import openvino

    profile = openvino.profile_ops(tiny_artifacts["openvino", "int8"], 1, samples=digits[0][:2], precision="int8")
    convs = [op for op in profile["ops"] if op["type"] == "Convolution"]
    assert convs and all(op["precision"] == "int8" and op["accelerated"] for op in convs)
    assert all(op["exec_type"] and not op["exec_type"].startswith("undef") for op in profile["ops"])
    assert openvino.exec_precision("ref_any_FP32") == "fp32" and openvino.exec_precision("jit_avx512_BF16") == "bf16"
    assert sum(op["share"] for op in profile["ops"]) == pytest.approx(1.0, abs=0.01)


def test_probes_run_in_fresh_processes_measure_memory_write_profiles_and_are_cached(tiny_artifacts, digits, tmp_path):
    from edgekit.cache import Cache
    from edgekit.variant import Variant

    cases = [("tflite", "fp32"), ("onnx", "int8"), ("openvino", "int8")]
    variants = [Variant(format=f, precision=p, path=tiny_artifacts[f, p], key=f"key-{f}-{p}") for f, p in cases]
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    variants.append(Variant(format="onnx", precision="fp32", model="broken", path=broken, key="key-broken"))
    ids = [f"{v.stem}@cpu" for v in variants]
    cache, run_dir = Cache(root=tmp_path / "cache"), tmp_path / "run"
    recipe, samples = _recipe(), list(digits[0][:4])
    out = profiles.profile_rows(variants, ids, recipe, samples, run_dir, cache, log=lambda line: None)
    for row_id in ids[:3]:
        memory, profile = out[row_id]["memory"], out[row_id]["profile"]
        assert memory["peak_bytes"] > 0 and 0 <= memory["load_bytes"] <= memory["peak_bytes"], memory
        assert "VmHWM" in memory["how"]
        saved = json.loads((run_dir / profile["file"]).read_text())
        assert saved["row"] == row_id and len(saved["ops"]) == profile["ops"] > 0
        assert profile["top_op_types"] and all(0 <= (t["share"] or 0) <= 1 for t in profile["top_op_types"])
    assert out["tflite-fp32@cpu"]["profile"]["partitions"] == 1
    assert out["onnx-int8@cpu"]["profile"]["qdq"]["nodes"] == 2
    # a probe that fails costs its row the profile and memory, nothing else
    assert out["broken-onnx-fp32@cpu"]["profile"] is None and out["broken-onnx-fp32@cpu"]["memory"] is None
    assert out["broken-onnx-fp32@cpu"]["profile_error"].startswith("probe exited with 1")
    again = profiles.profile_rows(variants, ids, recipe, samples, run_dir, cache, log=lambda line: None)
    assert cache.reused(profiles.STAGE) == ids[:3]  # the failed one is probed again, the others are not
    assert again["onnx-int8@cpu"]["profile"] == out["onnx-int8@cpu"]["profile"]


def test_profile_false_runs_no_probe(tiny_artifacts, digits, tmp_path):
    from edgekit.variant import Variant

    variant = Variant(format="tflite", precision="fp32", path=tiny_artifacts["tflite", "fp32"], key="k")
    out = profiles.profile_rows([variant], ["tflite-fp32@cpu"], _recipe(profile=False), list(digits[0][:2]),
                                tmp_path, None, log=lambda line: None)
    assert out == {} and not (tmp_path / "profiles").exists()


def test_a_build_attaches_profile_and_memory_to_every_cpu_row(tiny_run):
    results = tiny_run.results
    # the probes ran, and finished, before the timed rounds began
    assert tiny_run.output.index("[profile] ") < tiny_run.output.index("[bench] cpu: ")
    for row in results["rows"]:
        if row["status"] != "ok":
            continue
        assert row["memory"]["peak_bytes"] > 0, row["id"]
        if row["format"] == "keras":
            assert row["profile"] is None and row["profile_error"].startswith("no per-op profile for Keras rows")
            continue
        profile = row["profile"]
        assert (tiny_run.dir / profile["file"]).is_file()
        assert profile["ops"] >= 1 and profile["how"]
        # Every unit's share is rounded to 4 decimals, then each op type's sum of them again: each
        # rounding can add up to 0.00005, so rounded shares may sum past 1 by that much per rounding.
        units = profiles.units(json.loads((tiny_run.dir / profile["file"]).read_text()))
        roundings = len(units) + len(profile["top_op_types"])
        assert sum(t["share"] or 0 for t in profile["top_op_types"]) <= 1 + 0.00005 * roundings + 1e-12


def test_slower_int8_note_names_the_cause():
    """The int8-slower note carries the profile's cause (rows built by hand around real words)."""
    from edgekit.report.rows import add_speedups

    profile = {"runtime": "ai_edge_litert 2.3.0", "partitions": 1, "how": "h", "total_ms": 0.1,
               "ops": [{"index": 0, "type": "UNIDIRECTIONAL_SEQUENCE_LSTM", "accelerated": False, "precision": "int8",
                        "share": 0.9, "ms": 0.09},
                       {"index": 1, "type": "FULLY_CONNECTED", "accelerated": True, "precision": "int8",
                        "share": None, "ms": None}],
               "segments": [{"ops": [0], "where": "builtin kernel", "ms": 0.09, "share": 0.9},
                            {"ops": [1], "where": "XNNPACK partition 0", "ms": 0.01, "share": 0.1}]}
    rows = [{"id": f"tflite-{p}@cpu", "model": "base", "format": "tflite", "precision": p, "target": "cpu",
             "status": "ok", "runtime": "ai_edge_litert 2.3.0", "notes": [], "latency_ms": {"p50": p50},
             "profile": profiles.summarize(profile, None) if p == "int8" else None}
            for p, p50 in (("fp32", 0.01), ("int8", 0.1))]
    add_speedups(rows)
    note = rows[1]["notes"][0]
    assert note.startswith("int8 slower than fp32 in ai_edge_litert 2.3.0: 10.00x (one round: no interval); cause: "
                           "UNIDIRECTIONAL_SEQUENCE_LSTM runs outside XNNPACK on built-in kernels: 90% of time"), note


def _timed_row(fmt: str, precision: str, rounds: list[float], profile: dict | None = None) -> dict:
    p50 = sorted(rounds)[len(rounds) // 2]
    return {"id": f"{fmt}-{precision}@cpu", "model": "base", "format": fmt, "precision": precision, "target": "cpu",
            "status": "ok", "runtime": f"{fmt}rt", "notes": [], "latency_ms": {"p50": p50},
            "timing": {"round_p50_ms": rounds, "interleaved": True}, "profile": profile}


def test_a_row_much_slower_than_another_runtime_gets_a_note_with_the_cause():
    from edgekit.report.rows import add_speedups

    loop = {"runtime": "openvino 2026.4.1", "partitions": None, "how": "h", "profiled_ms": 0.2,
            "ops": [{"name": "while", "type": "Loop", "exec_type": "unknown_i32", "precision": "unknown",
                     "where": "no kernel of its own", "accelerated": False, "share": 0.97, "ms": 0.194},
                    {"name": "fc", "type": "FullyConnected", "exec_type": "gemm_mlas_f32", "precision": "fp32",
                     "where": "optimized kernel", "accelerated": True, "share": 0.03, "ms": 0.006}]}
    rows = [_timed_row("keras", "fp32", [1.0, 1.01, 0.99, 1.0, 1.02]),
            _timed_row("onnx", "fp32", [0.03, 0.031, 0.029, 0.03, 0.0305]),
            _timed_row("openvino", "fp32", [0.2, 0.21, 0.19, 0.2, 0.205], profiles.summarize(loop, None)),
            _timed_row("tflite", "fp32", [0.04, 0.041, 0.039, 0.04, 0.0405])]  # 1.33x onnx: no note
    add_speedups(rows)
    [note] = rows[2]["notes"]
    assert note.startswith("slower than onnx-fp32@cpu (onnxrt): 6.67x ["), note
    assert note.endswith("; cause: 1 Loop node(s) (exec_type unknown_i32, no kernel of its own: its body's kernels "
                         "are not listed): 97% of time"), note
    assert rows[3]["notes"] == [] and rows[1]["notes"] == [] and rows[0]["notes"] == []


def test_litert_control_flow_keeps_where_it_ran_and_says_why_shares_are_unknown(tmp_path):
    import tensorflow as tf

    from edgekit.runtimes import litert

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def looped(x):
        _, y = tf.while_loop(lambda i, x: i < 3, lambda i, x: (i + 1, tf.nn.relu(x * 1.1 + 0.5)), [tf.constant(0), x])
        return tf.nn.softmax(y)

    path = tmp_path / "while.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([looped.get_concrete_function()]).convert())
    profile = litert.profile_ops(path, 1, samples=np.zeros((1, 4), np.float32))
    assert "subgraphs (control flow)" in profile["shares_unknown"]
    assert {op["type"]: op["accelerated"] for op in profile["ops"]} == {"WHILE": False, "SOFTMAX": True}
    summary = profiles.summarize(profile, None)
    assert summary["not_accelerated"] == {**summary["not_accelerated"], "ops": 1, "share": None, "types": ["WHILE"]}
    assert causes.cause({"format": "tflite", "precision": "fp32", "profile": summary}) == \
        "1 op(s) outside XNNPACK (WHILE): an unknown share of time"


def test_edgekit_bench_on_files_profiles_each_file_unless_told_not_to(tiny_artifacts, tmp_path):
    """`edgekit bench` without a recipe: every file on this machine gets its memory and profile
    (a fresh process after the timed rounds); --no-profile gives neither."""
    from click.testing import CliRunner

    from edgekit.cli import cli

    files = [str(tiny_artifacts[fmt, "int8"]) for fmt in ("tflite", "onnx", "openvino")]
    out = tmp_path / "bench.json"
    done = CliRunner().invoke(cli, ["bench", *files, "--runs", "5", "--warmup", "1", "--out", str(out)])
    assert done.exit_code == 0, done.output
    rows = json.loads(out.read_text())["rows"]
    assert [row["format"] for row in rows] == ["tflite", "onnx", "openvino"]
    for row in rows:
        assert row["memory"]["peak_bytes"] > 0 and row["profile"]["ops"] > 0, row
    assert rows[0]["profile"]["partitions"] >= 1  # LiteRT: where XNNPACK took the int8 ops
    plain = CliRunner().invoke(cli, ["bench", *files[:1], "--runs", "5", "--warmup", "1", "--no-profile", "--out", str(out)])
    assert plain.exit_code == 0, plain.output
    assert "memory" not in json.loads(out.read_text())["rows"][0]


class _Steps(list):
    """A build log that keeps every progress step (what, done, total), as a terminal's bars get them."""

    def __call__(self, line: str) -> None:
        pass

    def step(self, what: str, done: int, total: int | None) -> None:
        self.append((what, done, total))


def test_a_build_into_a_relative_out_folder_still_probes_every_row(write_recipe, tmp_path, monkeypatch):
    """The README's own command writes to runs/<name>, a relative folder (`edgekit build` hands
    it to edgekit.build as it is); each probe runs in a folder of its own, and must still find the
    artifacts (and edgekit) there. The probes count on a progress bar of their own."""
    import edgekit
    from tests.conftest import TINY_RECIPE

    recipe = write_recipe(TINY_RECIPE.replace("seed: 3", "seed: 11") + "export:\n  formats: [tflite]\n")
    monkeypatch.chdir(recipe.parent)
    steps = _Steps()
    built = edgekit.build(recipe.name, out="runs/rel", log=steps)
    assert built.failed == []
    rows = json.loads((recipe.parent / "runs" / "rel" / "results.json").read_text())["rows"]
    for row in rows:
        assert row.get("profile_error") is None or row["format"] == "keras", row
        assert row["memory"]["peak_bytes"] > 0, row
    probed = [(done, total) for what, done, total in steps if what == "profiling rows"]
    assert probed and {total for _, total in probed} == {len(rows)}, probed  # one row each, its total never changes
    assert [done for done, _ in probed] == sorted(done for done, _ in probed) and probed[-1] == (len(rows), len(rows))
