"""Errors in one place: every exception class edgekit defines is in edgekit/errors.py, and one
helper (errors.one_line) cuts an exception to one line."""

from __future__ import annotations

import ast
from pathlib import Path

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
    (OSError("x" * 500), {"limit": 10}, "OSError: " + "x" * 10),
    ("already a message\nwith a tail", {}, "already a message"),
])
def test_one_line_cuts_an_exception_to_its_first_line(exc, kwargs, expected):
    assert one_line(exc, **kwargs) == expected
