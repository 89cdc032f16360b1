"""The C++ sources edgekit writes for TFLite Micro (edgekit.targets.c_source): an op resolver
whose Add methods are TFLite Micro's, compiled and run; names no device, row or model file can
use to break the files (newline, quote, backslash, trigraph, non-ASCII)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgekit.targets.c_source import (
    CUSTOM_ADDS,
    RESOLVER_BUILTINS,
    add_method,
    c_comment,
    c_identifier,
    file_stem,
    op_resolver,
    write_c_array,
)
from tests.targets.tflm_compile import build_and_run, compiler, header_adds, real_includes, resolver_count, syntax_check

needs_compiler = pytest.mark.skipif(compiler() is None, reason="no C++ compiler (g++ or clang++)")

#: device names that broke the generated files before they were sanitized (a newline put
#: `#error injected` on a line of its own; a quote ended the #include), and others of the kind
HOSTILE = ["m\n#error injected", 'q"uote', "back\\slash", "end\\", "tri??/gr", "caf\u00e9-\u677f", "*/ /* x",
           "9lives", "__reserved", "m\r\nx", "\u202eevil", "a b\tc"]


def test_add_methods_are_tflite_micros_spelling():
    assert add_method("CONV_2D") == "AddConv2D" and add_method("DEPTHWISE_CONV_2D") == "AddDepthwiseConv2D"
    assert add_method("FULLY_CONNECTED") == "AddFullyConnected" and add_method("L2_POOL_2D") == "AddL2Pool2D"
    assert add_method("BATCH_MATMUL") == "AddBatchMatMul" and add_method("PADV2") == "AddPadV2"
    assert add_method("UNIDIRECTIONAL_SEQUENCE_LSTM") == "AddUnidirectionalSequenceLSTM"
    assert add_method("CUSTOM:ethos-u") == "AddEthosU"
    assert add_method("TOPK_V2") is None and add_method("CUSTOM:mine") is None


def test_every_add_has_a_kernel_in_the_tflite_micro_wheel():
    """The table against the interpreter itself: each builtin it registers is one the installed
    tflite-micro wheel has a kernel for (its Register_X symbols)."""
    pytest.importorskip("tflite_micro")
    from edgekit.targets.mcu_run import kernel_names

    kernels = kernel_names()
    if not kernels:
        pytest.skip("the tflite-micro wheel's kernel symbols cannot be read (a stripped build)")
    assert RESOLVER_BUILTINS <= kernels, sorted(RESOLVER_BUILTINS - kernels)


def test_resolver_counts_each_type_once_and_names_the_unknown():
    resolver = op_resolver(["CONV_2D", "RESHAPE", "CONV_2D", "TOPK_V2", "CUSTOM:mine", "CUSTOM:ethos-u"])
    assert resolver["adds"] == ["AddConv2D", "AddReshape", "AddEthosU"] and resolver["count"] == 3
    assert resolver["unknown"] == ["TOPK_V2", "CUSTOM:mine"] and resolver["type"] == "tflite::MicroMutableOpResolver<3>"


@needs_compiler
def test_every_known_op_compiles_registers_and_fits_its_n(tmp_path):
    """All of TFLite Micro's operators in one model's header: the stub (TFLite Micro's Add methods)
    compiles every call, and at run time all of them fit N (none twice, none past it)."""
    folder = tmp_path / "artifacts"
    folder.mkdir()
    model = folder / "all-int8.tflite"
    model.write_bytes(bytes(range(256)) * 3)
    ops = [*sorted(RESOLVER_BUILTINS), *(f"CUSTOM:{name}" for name in CUSTOM_ADDS), "TOPK_V2"]
    field = write_c_array(model, folder, "all-int8@dev", "dev", ops, [("arena_bytes", 4096, "the arena")], "a test.")
    header, source = tmp_path / field["header"], tmp_path / field["source"]
    assert resolver_count(header) == len(ops) - 1 == field["op_resolver"]["count"]
    assert header_adds(header) == field["op_resolver"]["adds"] and field["op_resolver"]["unknown"] == ["TOPK_V2"]
    ((prefix, ran),) = build_and_run([header], [source], folder).items()
    assert prefix == "all_int8_dev" and ran["status"] == 0 and ran["length"] == 768
    assert ran["registered"] == field["op_resolver"]["adds"]
    if includes := real_includes():  # and against TFLite Micro's own header, where it is at hand
        done = syntax_check(source, includes)
        assert done.returncode == 0, done.stderr[-3000:]


@needs_compiler
def test_a_model_made_by_others_gets_its_resolver(tmp_path):
    """The sine model inside the tflite-micro wheel, its op list read by TFLite Micro's schema."""
    tflite_micro = pytest.importorskip("tflite_micro")
    from edgekit.targets.mcu_run import model_ops

    sine = Path(tflite_micro.__file__).parent / "python" / "tflite_micro" / "sine_float.tflite"
    folder = tmp_path / "artifacts"
    folder.mkdir()
    ops = model_ops(sine.read_bytes())
    field = write_c_array(sine, folder, "sine@dev", "dev", ops, [], "a test.")
    ((_, ran),) = build_and_run([tmp_path / field["header"]], [tmp_path / field["source"]], folder).items()
    assert ops == ["FULLY_CONNECTED"] and ran == {"status": 0, "length": sine.stat().st_size, "registered": ["AddFullyConnected"]}


@needs_compiler
def test_hostile_names_cannot_break_the_files(tmp_path):
    """Each hostile device name (and a hostile model file name) gives files that compile and run
    side by side in one program: no injected line, every #include found, no two symbols alike."""
    folder = tmp_path / "artifacts"
    folder.mkdir()
    model = folder / 'model "x"\n#error also\\.tflite'
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(40))
    fields = [write_c_array(model, folder, f"tflite-int8@{name}", name, ["FULLY_CONNECTED", "SOFTMAX"],
                            [("arena_bytes", 1024, f"arena for {name}")], f"for {name}.") for name in HOSTILE]
    headers = [tmp_path / f["header"] for f in fields]
    sources = [tmp_path / f["source"] for f in fields]
    assert len({f["symbol"] for f in fields}) == len(HOSTILE) == len(set(headers))
    for path in [*headers, *sources]:
        text = path.read_text(encoding="ascii")  # nothing but ASCII in what a compiler reads
        assert not re.search(r"^\s*#\s*error", text, flags=re.M), path.name
        assert not any(line.rstrip().endswith("\\") for line in text.splitlines() if line.startswith("//"))
        assert "??" not in text and "\r" not in text
    ran = build_and_run(headers, sources, folder)
    assert len(ran) == len(HOSTILE) and all(r["status"] == 0 and r["registered"] == ["AddFullyConnected", "AddSoftmax"]
                                            for r in ran.values())


def test_plain_ids_stay_as_they_are_and_others_get_a_mark():
    assert c_identifier("tflite-int8@cortex-m4-256k") == "tflite_int8_cortex_m4_256k"
    assert file_stem("pruned80-tflite-int8@cortex-m4-256k") == "pruned80-tflite-int8@cortex-m4-256k"
    assert c_identifier("a\nb") != c_identifier("a b") and file_stem("x@a\nb") != file_stem("x@a b")
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*", c_identifier("__9\u00e9\\\"x"))
    assert file_stem("x@../../etc/passwd").startswith("x@.._.._etc_passwd-") and "/" not in file_stem("a/b")
    assert c_comment("a\\\nb??/c\u00e9") == "a__b__/c_"
