"""The few exception types edgekit raises on purpose.

Every message is one line that says what was expected, what was received and what to do.
They subclass ``click.ClickException`` so the CLI prints them without a traceback.
"""

from __future__ import annotations

import difflib
from typing import Iterable

import click


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
