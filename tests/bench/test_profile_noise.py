"""Profiles that survive noise: per-op shares come with their rounds, and a share whose rounds
put it at 0 is never blamed; the named cause of an unchanged artifact does not change between
reruns of its profile."""

from __future__ import annotations

import re

import numpy as np
import pytest

from edgekit.bench.profiles import share_spread, summarize
from edgekit.report.causes import cause


def _litert_profile(softmax_rounds):
    """A LiteRT profile: one XNNPACK partition and a SOFTMAX on built-in kernels."""
    softmax_share = float(np.median(softmax_rounds))
    return {"runtime": "ai_edge_litert", "partitions": 1, "total_ms": 0.01,
            "ops": [{"index": 0, "name": "fc", "type": "FULLY_CONNECTED", "where": "XNNPACK partition 0",
                     "accelerated": True, "precision": "int8", "segment": 0, "ms": None, "share": None},
                    {"index": 1, "name": "softmax", "type": "SOFTMAX", "where": "builtin kernel", "accelerated": False,
                     "precision": "int8", "segment": 1, "ms": 0.002, "share": softmax_share,
                     "share_rounds": softmax_rounds}],
            "segments": [{"ops": [0], "where": "XNNPACK partition 0", "ms": 0.008, "share": 1 - softmax_share,
                          "share_rounds": [1 - v for v in softmax_rounds]},
                         {"ops": [1], "where": "builtin kernel", "ms": 0.002, "share": softmax_share,
                          "share_rounds": softmax_rounds}]}


def _row(profile):
    return {"id": "tflite-int8@cpu", "format": "tflite", "precision": "int8", "profile": summarize(profile, None)}


def test_a_share_its_rounds_put_at_zero_is_not_blamed():
    noisy = _row(_litert_profile([0.26, 0.0, 0.02]))  # 26% once, nothing in the other rounds
    steady = _row(_litert_profile([0.24, 0.26, 0.25]))
    softmax = next(t for t in noisy["profile"]["top_op_types"] if t["type"] == "SOFTMAX")
    assert softmax["share_low"] == 0.0 and softmax["share_high"] == 0.26
    # named as where the time goes only where every round agrees; that it runs outside XNNPACK
    # is a fact of the graph, said either way
    assert "SOFTMAX runs outside XNNPACK" not in cause(noisy) and "(SOFTMAX)" in cause(noisy)
    assert "SOFTMAX runs outside XNNPACK on built-in kernels: 25% of time" in cause(steady)
    assert share_spread([{"share_rounds": [0.1, 0.2]}, {"share_rounds": [0.3, 0.1]}]) == {"share_low": 0.3,
                                                                                       "share_high": 0.4}
    assert share_spread([{"share_rounds": [0.1, 0.2]}, {}]) == {}  # a round missing: no spread


@pytest.mark.parametrize("fmt", ["tflite", "onnx", "openvino"])
def test_the_named_cause_never_changes_between_reruns(fmt, tiny_artifacts, digits):
    import importlib

    from edgekit.formats import FORMATS

    x, _ = digits
    module = importlib.import_module(FORMATS[fmt].runtime_module)
    named = []
    for _ in range(3):
        profile = module.profile_ops(tiny_artifacts[fmt, "int8"], 1, samples=x[:4], runs=50, precision="int8")
        assert all(op.get("share_rounds") for op in profile["ops"] if op.get("share") is not None)
        row = {"id": f"{fmt}-int8@cpu", "format": fmt, "precision": "int8", "profile": summarize(profile, None)}
        # what is named, without its measured numbers (the shares move; the blame must not)
        named.append(re.sub(r"\d+(\.\d+)?", "#", cause(row) or ""))
    assert named[0] and named[0] == named[1] == named[2], named
