"""int8-fast (edgekit.convert.fast): layers whose int8 kernels are slower stay float, chosen by
op times whose rounds agree, kept only where the whole model is faster within its interval."""

from __future__ import annotations

import pytest

from edgekit.convert.fast import _choose, compare_groups, layer_groups
from edgekit.formats import FORMATS
from edgekit.report.rows import fast_note


def _model():
    import tf_keras as keras

    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(x), name="net")


def test_layers_group_with_the_normalization_and_activation_they_fuse_with():
    groups = layer_groups(_model())
    assert groups.of("relu") == "conv" and groups.of("bn") == "conv" and groups.of("dw") == "dw"
    assert groups.members("conv") == ["conv", "bn", "relu"] and groups.members("head") == ["head"]


def test_a_group_goes_float_only_where_every_round_says_int8_is_slower():
    model = _model()
    # names as the runtimes give them: TFLite's fused ";" names, a DEQUANTIZE of no layer
    fp32 = [{"name": "net/relu/Relu;net/bn/FusedBatchNormV3;net/conv/Conv2D", "us": [2.0, 2.1, 2.0]},
            {"name": "net/dw/depthwise", "us": [1.0, 1.0, 1.1]},
            {"name": "net/head/MatMul", "us": [1.0, 1.0, 1.0]}]
    int8 = [{"name": "net/relu/Relu;net/conv/Conv2D", "us": [5.0, 5.2, 4.9]},  # slower in every round
            {"name": "net/dw/depthwise", "us": [3.0, 0.5, 3.0]},  # rounds disagree: noise, stays int8
            {"name": "net/head/MatMul", "us": [0.5, 0.5, 0.6]},
            {"name": "tfl.dequantize", "us": [0.3, 0.3, 0.3]}]
    table, loose = compare_groups(model, fp32, int8)
    rows = {row["group"]: row for row in table}
    assert [g for g, row in rows.items() if row["float"]] == ["conv"]
    assert rows["conv"]["int8_us"][0] == pytest.approx(5.0) and "all 3 rounds" in rows["conv"]["why"]
    assert not rows["dw"]["float"] and not rows["head"]["float"]
    assert loose["int8_us"][0] == pytest.approx(0.3) and loose["fp32_us"][0] == 0


def _timing(candidate, fp32):
    """Whole-model figures as edgekit.convert.fast records them: speedups with 95% intervals."""
    return {"int8": {"speedup_vs_fp32": 1 / fp32[0], "speedup_vs_fp32_ci95": [1 / fp32[2], 1 / fp32[1]]},
            "candidate": {"speedup_vs_int8": candidate[0], "speedup_vs_int8_ci95": list(candidate[1:]),
                          "speedup_vs_fp32": candidate[0] / fp32[0],
                          "speedup_vs_fp32_ci95": [candidate[1] / fp32[2], candidate[2] / fp32[1]]},
            "fp32": {"speedup_vs_int8": fp32[0], "speedup_vs_int8_ci95": list(fp32[1:])}}


def test_the_choice_needs_the_whole_model_faster_within_its_interval():
    assert _choose(_timing((1.6, 1.5, 1.7), (1.1, 1.0, 1.2)))[0] == "candidate"
    choice, why = _choose(_timing((1.04, 0.9, 1.2), (0.8, 0.7, 0.9)))  # within the noise: plain int8
    assert choice == "int8" and "not faster beyond both" in why
    choice, why = _choose(_timing((1.2, 1.1, 1.3), (2.0, 1.8, 2.2)))  # fp32 beats every int8 mix
    assert choice == "fp32" and "every layer stays float" in why
    # two sessions of plain int8 differed by 12%: a 1.1-1.3x candidate is not past that, nor is
    # an fp32 0.9x-0.95x of it
    noisy = {**_timing((1.2, 1.1, 1.3), (1.08, 1.05, 1.11)), "session_noise": 0.12}
    choice, why = _choose(noisy)
    assert choice == "int8" and "session noise 12%" in why


def test_the_note_names_the_float_layers_with_their_measured_times():
    fast = {"choice": "candidate", "groups": [
        {"group": "conv", "float": True, "int8_us": [5.0, 4.9, 5.2], "fp32_us": [2.0, 2.0, 2.1]},
        {"group": "head", "float": False, "int8_us": [0.5, 0.5, 0.6], "fp32_us": [1.0, 1.0, 1.0]}],
        "whole": {"candidate": {"speedup_vs_int8": 1.6, "speedup_vs_int8_ci95": [1.5, 1.7],
                                "speedup_vs_fp32": 1.3, "speedup_vs_fp32_ci95": [1.2, 1.4]}}}
    note = fast_note(fast)
    assert note.startswith("int8-fast: 1 layer group(s) kept float") and "conv (5.0 vs 2.0 us)" in note
    assert "1.60x [1.50-1.70] plain int8" in note and "head" not in note


def test_build_fast_measures_chooses_and_writes_a_working_artifact(tiny_model, digits, tmp_path):
    from edgekit.convert import keras_layer_names
    from edgekit.convert.fast import build_fast
    from edgekit.runtimes.litert import open_session

    x, _ = digits
    path = tmp_path / "fast.tflite"
    settings = build_fast(FORMATS["tflite"], tiny_model, path, x[:64], {}, log=lambda line: None)
    fast = settings["fast"]
    assert fast["choice"] in ("int8", "candidate", "fp32") and fast["why"]
    assert {"int8", "fp32"} <= set(fast["whole"]) and len(fast["whole"]["int8"]["round_p50_ms"]) >= 2
    groups = {g["group"] for g in fast["groups"]}  # the tiny CNN's layers, each timed at both precisions
    assert len(groups) >= 3 and groups <= set(keras_layer_names(tiny_model)), groups
    assert all(g["int8_us"][0] > 0 and g["fp32_us"][0] > 0 for g in fast["groups"])
    floated = [g["group"] for g in fast["groups"] if g["float"]]
    if fast["choice"] == "candidate":
        assert floated and fast["kept_float"] == floated and set(floated) <= set(settings["kept_float"])
    outputs = open_session(path).predict(x[:32])
    reference = tiny_model(x[:32]).numpy()
    assert (outputs.argmax(1) == reference.argmax(1)).mean() >= 0.9


def test_a_node_is_pinned_only_where_every_round_says_the_other_kernel_is_faster():
    from edgekit.convert.fast import choose_kernels

    default = [{"name": "conv1", "exec_type": "amx", "us": [40.0, 38.0, 41.0]},
               {"name": "conv2", "exec_type": "amx", "us": [10.0, 9.0, 10.0]},
               {"name": "pool", "exec_type": "jit", "us": [2.0, 2.0, 2.0]}]
    brg = [{"name": "conv1", "exec_type": "brg", "us": [25.0, 24.0, 26.0]},
           {"name": "conv2", "exec_type": "brg", "us": [8.0, 10.5, 8.0]},  # one round slower: noise
           {"name": "pool", "exec_type": "jit", "us": [1.0, 1.0, 1.0]}]  # the same kernel: not a choice
    jit = [{"name": "conv1", "exec_type": "jit", "us": [16.0, 15.0, 17.0]},
           {"name": "conv2", "exec_type": "jit", "us": [9.9, 8.9, 9.9]}]  # faster, by under MIN_GAIN_US
    pins, table, merged = choose_kernels(default, {"brg": brg, "jit": jit})
    assert pins == {"conv1": "jit"}
    assert [row["node"] for row in table] == ["conv1", "conv2"] and table[1]["pinned"] is None
    assert table[0]["alternatives"]["brg"]["us"][0] == 25.0
    assert [op["us"][0] for op in merged] == [16.0, 10.0, 2.0]  # the group comparison sees the pinned kernel


def test_the_fastest_mix_past_the_noise_is_kept():
    timing = _timing((1.15, 1.1, 1.2), (0.9, 0.85, 0.95))
    timing["kernels"] = {"speedup_vs_int8": 1.3, "speedup_vs_int8_ci95": [1.25, 1.35],
                         "speedup_vs_fp32": 1.44, "speedup_vs_fp32_ci95": [1.35, 1.5]}
    choice, why = _choose(timing)
    assert choice == "kernels" and "1.30x plain int8" in why
    timing["kernels"]["speedup_vs_int8_ci95"] = [0.95, 1.6]  # its interval reaches 1: the candidate wins
    assert _choose(timing)[0] == "candidate"
    timing["candidate"]["speedup_vs_int8_ci95"] = [0.9, 1.3]
    choice, why = _choose(timing)
    assert choice == "int8" and why.count("not faster") == 1 and "faster kernels" in why and "groups float" in why


def test_the_note_names_the_pinned_kernels_with_their_measured_times():
    fast = {"choice": "kernels", "kernels": [
        {"node": "net/conv/Convolution", "default": "brgconv_avx512_amx_1x1_I8", "default_us": [40.0, 38.0, 41.0],
         "alternatives": {"avx512 jit": {"exec_type": "jit_avx512_1x1_I8", "us": [16.0, 15.0, 17.0]}},
         "pinned": "avx512 jit"},
        {"node": "net/other/Convolution", "default": "brgconv_avx512_amx_I8", "default_us": [5.0, 5.0, 5.0],
         "alternatives": {"avx512 jit": {"exec_type": "jit_avx512_I8", "us": [6.0, 6.0, 6.0]}}, "pinned": None}],
        "whole": {"kernels": {"speedup_vs_int8": 1.3, "speedup_vs_int8_ci95": [1.25, 1.35],
                              "speedup_vs_fp32": 1.4, "speedup_vs_fp32_ci95": [1.3, 1.5]}}}
    note = fast_note(fast)
    assert note.startswith("int8-fast: 1 int8 node(s) pinned") and "net/other" not in note
    assert "net/conv/Convolution (16.0 us jit_avx512_1x1_I8 vs 40.0 us brgconv_avx512_amx_1x1_I8)" in note
    assert "1.30x [1.25-1.35] plain int8, 1.40x [1.30-1.50] fp32" in note
