"""Errors in one place: every exception class edgekit defines is in edgekit/errors.py, and one
helper (errors.one_line) cuts an exception to one line."""

from __future__ import annotations

import ast
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import edgekit
from edgekit.errors import one_line

PACKAGE = Path(edgekit.__file__).parent
#: runs on devices where edgekit is not installed: keeps its own small exception and one-liner
STANDALONE = {PACKAGE / "targets" / "runner.py"}


def _modules():
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "errors.py" and p not in STANDALONE]


def _base_names(node: ast.ClassDef) -> list[str]:
    return [b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else "" for b in node.bases]


def test_every_exception_class_is_in_errors_py():
    exceptions = {name for name, value in vars(__import__("edgekit.errors").errors).items()
                  if isinstance(value, type) and issubclass(value, BaseException)}
    outside = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            # Private control-flow exceptions (a leading underscore) stay beside their one user.
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and any(
                    base.endswith(("Error", "Exception")) or base in exceptions for base in _base_names(node)):
                outside.append(f"{path.relative_to(PACKAGE)}: {node.name}")
    assert outside == [], "move these into edgekit/errors.py (and import them where they were): " + ", ".join(outside)


def test_no_module_keeps_its_own_one_line_helper():
    copies = [f"{p.relative_to(PACKAGE)}: {n.name}" for p in _modules() for n in ast.walk(ast.parse(p.read_text()))
              if isinstance(n, ast.FunctionDef) and n.name.strip("_") == "one_line"]
    assert copies == []


@pytest.mark.parametrize("exc, kwargs, expected", [
    (ValueError("first line\nsecond line"), {}, "ValueError: first line"),
    (KeyError(), {}, "KeyError"),
    (RuntimeError("{{function_node __inference_f_12}} out of memory\nstack"), {"typed": False}, "out of memory"),
    # one token longer than the limit is the only thing cut inside, and says so
    (OSError("x" * 500), {"limit": 10}, "OSError: " + "x" * 6 + "..."),
    (OSError("no such file or directory"), {"limit": 12}, "OSError: no such ..."),
    ("already a message\nwith a tail", {}, "already a message"),
])
def test_one_line_cuts_an_exception_to_its_first_line(exc, kwargs, expected):
    assert one_line(exc, **kwargs) == expected


def _library_messages(tmp_path) -> list[str]:
    """Long first lines of real exceptions from the libraries edgekit wraps (TensorFlow, Keras 3,
    tf_keras, onnxruntime), as they reach ``one_line``."""
    import keras
    import onnxruntime
    import tensorflow as tf
    import tf_keras
    from onnx import TensorProto, helper

    caught = []

    def catch(call):
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - collecting what the libraries raise
            caught.append(str(exc))

    catch(lambda: tf.reshape(tf.zeros(5), [2, 3]))  # "{{function_node ...}} Input to reshape is a tensor ..."
    catch(lambda: keras.layers.TFSMLayer.from_config({"filepath": str(tmp_path)}, safe_mode=True))
    plain = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(plain)
    with zipfile.ZipFile(plain) as old, zipfile.ZipFile(tmp_path / "renamed.keras", "w") as new:
        for name in old.namelist():
            data = old.read(name)
            if name == "config.json":
                data = json.dumps({**json.loads(data), "class_name": "Missing", "module": None, "registered_name": "Missing"}).encode()
            new.writestr(name, data)
    catch(lambda: keras.saving.load_model(tmp_path / "renamed.keras", safe_mode=False))  # "Could not locate class ..."
    folder = tmp_path / "tf_saved"
    tf.saved_model.save(tf_keras.Sequential([tf_keras.Input((2,)), tf_keras.layers.Dense(1)]), str(folder))
    catch(lambda: tf_keras.models.load_model(folder))  # "... lacks the TF-Keras metadata file. Please save ..."
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    session = onnxruntime.InferenceSession(helper.make_model(graph).SerializeToString(), providers=["CPUExecutionProvider"])
    catch(lambda: session.run(None, {"x": np.zeros((2, 5), np.float32)}))  # "Got invalid dimensions for input ..."
    return caught


def test_no_library_message_is_cut_inside_a_word_and_the_fix_stays(tmp_path):
    """Real messages, cut at the lengths edgekit uses: each kept part is the message's own start,
    ending at a word (or sentence) boundary, and edgekit's fix after it is whole."""
    from edgekit.errors import ModelError, shorten

    messages = _library_messages(tmp_path)
    assert len(messages) == 5 and all(len(m.splitlines()[0]) > 100 for m in messages), [m[:80] for m in messages]
    fix = "is it a complete .keras, .h5 or SavedModel saved by Keras?"
    for message in messages:
        for limit in (60, 100, 120, 160, 200, 300):
            kept = one_line(message, limit, typed=False)
            first = message.strip().splitlines()[0]
            first = first.split("}} ", 1)[-1] if first.startswith("{{") else first  # one_line drops TF's prefix
            body = kept.removesuffix(" ...")
            assert len(kept) <= limit and first.startswith(body), (limit, kept)
            assert len(body) == len(first) or first[len(body)] == " ", f"cut inside a word at {limit}: {kept!r}"
            assert kept == body or first[len(body):].strip(), kept  # an ellipsis only where something was cut
            error = ModelError(f"model.file: cannot load m.keras: {kept}; {fix}")
            assert str(error.message).endswith(fix) and "\n" not in error.message
            assert shorten(first, limit) == kept


def test_every_cut_of_library_text_goes_through_the_word_safe_helpers():
    """No module cuts an exception's or a process's text by slicing (``str(exc)[:200]``,
    ``lines[-1][:300]``): they call errors.shorten / one_line (runtimes.first_line on devices)."""
    suspects = ("exc", "error", "lines", "stderr", "stdout", "reason", "message", "text", "output")
    found = []
    for path in [*_modules(), *STANDALONE]:
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if not (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice)):
                continue
            upper, lower = node.slice.upper, node.slice.lower
            if lower is not None or not (isinstance(upper, ast.Constant) and isinstance(upper.value, int) and upper.value >= 60):
                continue
            cut = ast.get_source_segment(source, node.value) or ""
            if any(word in cut for word in suspects):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.get_source_segment(source, node)}")
    assert found == [], "cut these with edgekit.errors.shorten (or one_line): " + "; ".join(found)
