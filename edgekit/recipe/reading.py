"""Reading a recipe file into plain Python values, bounded in time and memory.

``yaml.safe_load`` never runs code, but on its own it still accepts documents that hurt: a
few hundred bytes of anchors and aliases expand into millions of values (an "alias bomb"),
deep nesting overflows the parser's recursion, an integer of 5,000 digits raises a bare
ValueError, and a repeated key silently keeps its last value. This module refuses each of
them with one line before the schema sees the document.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from edgekit.errors import RecipeError, one_line

#: a recipe is a few kilobytes; a megabyte is a mistake (a data file passed as the recipe)
MAX_BYTES = 1 << 20
#: values after expanding aliases; the largest shipped recipe has a few hundred
MAX_VALUES = 100_000
#: nesting levels; recipes use four or five
MAX_DEPTH = 32
#: digits of one integer literal; no recipe field needs more than 20
MAX_INT_DIGITS = 30


class _Refused(yaml.constructor.ConstructorError):
    """Valid YAML holding something a recipe must not (a repeated key, a 5,000-digit integer)."""


class _RecipeLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and absurdly long integer literals."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: flattened by SafeLoader below
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise _Refused(
                    None, None, "a mapping key must be a plain value, not a list or mapping", key_node.start_mark) from None
            if key in seen:
                raise _Refused(
                    None, None, f"duplicate key {str(key)[:40]!r} (first given at line {seen[key].line + 1}); "
                    "a repeated key would silently replace the first: keep one", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        digits = sum(c.isalnum() for c in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise _Refused(
                None, None, f"an integer of {digits} digits; no recipe field takes a number that large", node.start_mark)
        return super().construct_yaml_int(node)


_RecipeLoader.add_constructor("tag:yaml.org,2002:int", _RecipeLoader.construct_yaml_int)


def read_document(path: Path) -> tuple[Any, bytes]:
    """The YAML document in ``path`` as plain values, and the file's bytes.

    Raises:
        RecipeError: one line naming the file and the problem: not found, unreadable, too
            large, not YAML, a duplicate key, a huge integer, too deep, or too many values
            once aliases are expanded.
    """
    try:
        if not path.is_file():
            raise RecipeError(f"{path}: recipe file not found; check the path (example recipes are in recipes/)")
        if path.stat().st_size > MAX_BYTES:
            raise RecipeError(f"{path}: {path.stat().st_size} bytes, expected a recipe of at most {MAX_BYTES} bytes; "
                              "is this the right file?")
        raw = path.read_bytes()
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise RecipeError(f"{path!s:.200}: cannot read the recipe file ({exc}); check the path") from None
    try:
        document = yaml.load(raw, Loader=_RecipeLoader)  # noqa: S506 - a SafeLoader subclass
    except _Refused as exc:
        mark = exc.problem_mark
        raise RecipeError(f"{path}: line {mark.line + 1}, column {mark.column + 1}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or one_line(exc, typed=False)
        raise RecipeError(f"{path}: not valid YAML{where}: {problem}; fix the syntax there") from None
    except RecursionError:
        raise RecipeError(f"{path}: nested too deeply for a recipe (at most {MAX_DEPTH} levels); "
                          "flatten the lists and mappings") from None
    except (OverflowError, ValueError) as exc:  # PyYAML's chr() of an escape beyond Unicode ("\U7fffffff")
        raise RecipeError(f"{path}: not valid YAML: an escape sequence names no character ({one_line(exc, typed=False)}); "
                          "fix the quoted string") from None
    _check_size(document, path)
    return document, raw


def _check_size(document: Any, path: Path) -> None:
    """Refuse documents that are too deep or too large once aliases are expanded.

    Aliases make the parsed value a graph whose nodes are shared; walking it as a tree counts
    each use, which is the size every later step (validation, hashing, printing) would see.
    """
    budget = [MAX_VALUES]
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        budget[0] -= 1
        if budget[0] < 0:
            raise RecipeError(f"{path}: more than {MAX_VALUES} values (each use of a YAML alias *name counts in full); "
                              "a recipe needs a few hundred: remove aliases or entries")
        if depth > MAX_DEPTH:
            raise RecipeError(f"{path}: nested more than {MAX_DEPTH} levels deep; a recipe needs about five: "
                              "flatten the lists and mappings")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
