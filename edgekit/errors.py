"""The few exception types edgekit raises on purpose.

Every message is one line that says what was expected, what was received and what to do.
They subclass ``click.ClickException`` so the CLI prints them without a traceback.
"""

from __future__ import annotations

import difflib
import re
import reprlib
from typing import TYPE_CHECKING, Any, Iterable, get_args, get_origin

import click

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError


class EdgekitError(click.ClickException):
    """Base class; exit code 1 (a pipeline failure). The message is kept to one line: control
    characters that came from the user's input (a key holding a newline) are shown escaped."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(_single_line(message))


def _single_line(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class InputError(EdgekitError):
    """Bad input from the user: recipe, data or model file. Exit code 2, nothing is run."""

    exit_code = 2


class RecipeError(InputError):
    """The recipe file is missing, is not YAML, or does not match the schema."""


class DataError(InputError):
    """A dataset cannot be found, read, or does not fit the model."""


class ModelError(InputError):
    """A model name is unknown or a model file cannot be loaded."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean "x"?)' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def one_line(exc: BaseException) -> str:
    """An exception cut to one line: its type and the first line of its message (300 characters)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


def format_validation_error(exc: ValidationError, root: type[BaseModel]) -> str:
    """Turn pydantic's errors into one line: 'field.path: expected ..., received ...'.

    ``root`` is the model that was validated (the recipe, a device profile): unknown keys get a
    did-you-mean from the keys allowed at their place in it.
    """
    # An unknown key usually explains a "missing" one next to it (a typo), so it goes first.
    errors = sorted(exc.errors(), key=lambda err: err["type"] != "extra_forbidden")
    parts = [_format_one(err, root) for err in errors]
    extra = f" (and {len(parts) - 1} more)" if len(parts) > 1 else ""
    return parts[0] + extra


def _format_one(err: dict[str, Any], root: type[BaseModel]) -> str:
    loc = err["loc"]
    where = _loc_to_path(loc) or "(top level)"
    kind = err["type"]
    received = err.get("input")
    if kind == "extra_forbidden":
        allowed = _fields_at(root, loc[:-1])
        return f"{where}: unknown key{did_you_mean(str(loc[-1]), allowed)}; allowed keys here: {', '.join(allowed)}"
    if kind == "missing":
        return f"{where}: required field is missing; add it to the recipe"
    if kind == "value_error":
        return f"{where}: {err['msg'].removeprefix('Value error, ')}"
    if kind == "too_long":
        limit = err.get("ctx", {}).get("max_length")
        return f"{where}: expected at most {limit} items, received {len(received)}; remove some"
    expected = re.sub(r"^Input should (be )?", "", err["msg"])
    if kind == "literal_error" and isinstance(received, str):
        options = re.findall(r"'([^']*)'", err["msg"])
        expected += did_you_mean(received, options[:50])
    return f"{where}: expected {expected}, received {_short_repr(received)}"


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 2, 4, 4, 60, 60, 40


def _short_repr(value: Any) -> str:
    """A repr bounded in length and effort: the error line must stay one short line whatever
    the input was (a repr of a huge expanded list would take minutes and fill the screen)."""
    return _REPR.repr(value)


def _loc_to_path(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _fields_at(root: type[BaseModel], loc: tuple) -> list[str]:
    """The allowed keys of the section at ``loc`` (for did-you-mean on unknown keys)."""
    from pydantic import BaseModel  # at call time: importing errors must stay cheap

    model = root
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        while get_origin(annotation) is not None:  # unwrap list[X], X | None
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
