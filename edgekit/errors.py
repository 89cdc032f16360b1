"""Every exception type edgekit raises on purpose, and the helpers that word errors.

Every message is one line that says what was expected, what was received and what to do.
``EdgekitError`` and its subclasses are ``click.ClickException``s, so the CLI prints them
without a traceback. The device runner (targets/runner.py) keeps its own small exception: it
runs on devices where edgekit is not installed; private control-flow exceptions stay beside
their one user (cache.py's).
"""

from __future__ import annotations

import difflib
import re
import reprlib
import signal
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


class DeviceProfileError(InputError):
    """A device profile is missing, not YAML, or does not match the schema (exit code 2)."""


class DeviceError(Exception):
    """Something went wrong talking to a device; the message is one line.

    Not an EdgekitError: a build catches it and fails that device's rows, it never ends a build.

    Attributes:
        connection: True when the device could not be reached or refused us (host key,
            authentication, network): every later run would fail the same way.
        transient: True when trying again may work (a refused, dropped or timed-out connection,
            a step past its timeout); a device's runs retry these with backoff
            (``edgekit.targets.fleet``), never a host-key or authentication refusal.
    """

    def __init__(self, message: str, connection: bool = False, transient: bool = False):
        super().__init__(message)
        self.connection = connection
        self.transient = transient


class CorruptEntry(Exception):
    """A stage-cache entry whose files do not match its manifest, or that cannot be read.

    Not an EdgekitError: the cache discards such an entry (one line in the log) and recomputes it.
    """


class WorkerDied(Exception):
    """The worker process running a task died (crashed, killed) before it answered.

    Not an EdgekitError: the build fails that variant's rows with the reason and goes on.
    """

    def __init__(self, exitcode: int | None, stage: str | None, worker: str | None = None, tries: int = 1):
        #: ``worker``: a remote worker that died last (its address, from a cluster executor); ``tries``: workers that died on it
        self.exitcode, self.stage, self.worker, self.tries = exitcode, stage, worker, tries
        super().__init__(f"the worker process {self.how()}" + (f" during {stage}" if stage else ""))

    @property
    def signal_name(self) -> str | None:
        """``SIGSEGV`` for a worker killed by a signal, else None."""
        if self.exitcode is None or self.exitcode >= 0:
            return None
        try:
            return signal.Signals(-self.exitcode).name
        except ValueError:
            return f"signal {-self.exitcode}"

    def how(self) -> str:
        """``crashed (SIGSEGV)``, ``was killed (SIGKILL: out of memory?)`` or ``exited (code 3)``."""
        if self.worker is not None:  # a cluster's worker: its exit code is the cluster's to know
            again = f" (tried {self.tries} times, each on a worker that died)" if self.tries > 1 else ""
            return f"on worker {self.worker} died{again}"
        name = self.signal_name
        if name == "SIGKILL":  # what the kernel's OOM killer sends
            return "was killed (SIGKILL: out of memory?)"
        if name:
            return f"crashed ({name})"
        return f"exited (code {self.exitcode})"


class SchedulerLost(EdgekitError):
    """The cluster executor's scheduler went away during a build: partial results are written as on Ctrl-C."""


class TaskFailed(Exception):
    """A worker task raised an exception (or got no answer); the message is it in one line."""


class NotCached(Exception):
    """A stage that would compute in a cache-only probe: the variant needs a worker process."""


class ExportError(Exception):
    """The model cannot become a Keras 3 file for the gpu target; the message is one line."""


class ToolFailed(Exception):
    """A native benchmark tool (`edgekit verify`) ran but gave no figure: it exited non-zero,
    timed out, or printed no latency."""


class Interrupted(EdgekitError):
    """Ctrl-C: partial results are written, and the conventional exit code of SIGINT."""

    exit_code = 130


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean "x"?)' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def one_line(exc: BaseException | str, limit: int = 300, typed: bool = True) -> str:
    """An exception cut to one line: its type and the first line of its message.

    Args:
        exc: the exception (or a message already taken from one).
        limit: at most this many characters of the message are kept (``shorten``: whole
            sentences or whole words, never part of a word).
        typed: False gives the message alone, for reasons that name the failing step themselves.
    """
    # TensorFlow prefixes op errors with "{{function_node ...}}"; the reason is what follows it.
    text = re.sub(r"^\{\{[^}]*\}\}\s*", "", str(exc).strip()).splitlines()
    first = shorten(text[0], limit) if text else ""
    if not typed or isinstance(exc, str):
        return first
    return f"{type(exc).__name__}: {first}".rstrip(": ")


#: what ends a shortened message that was cut between words (not at the end of a sentence)
ELLIPSIS = " ..."


def shorten(text: str, limit: int = 300) -> str:
    """``text`` in at most ``limit`` characters, never cut inside a word.

    A library's message often runs to several sentences (Keras' "Could not locate class ...
    Make sure custom classes ... are imported"); edgekit appends its own fix after it, so the
    message is cut rather than the line made long. The cut keeps whole sentences where they
    fill at least 60% of ``limit``, else whole words followed by " ...". One token longer than
    ``limit`` (a path, a blob) is the only thing cut inside: nothing shorter would be left.
    """
    text = text.strip()
    if len(text) <= limit:
        return text
    room = max(1, limit - len(ELLIPSIS))
    # the last sentence end (". ", "! ", "? ", "; ") that fits, when it keeps most of the room
    ends = [m.end(1) for m in re.finditer(r"([.!?;])\s", text[: limit + 1])]
    if ends and ends[-1] >= 0.6 * limit:
        return text[: ends[-1]].rstrip(";")
    cut = text.rfind(" ", 0, room + 1)
    if cut > 0:
        return text[:cut].rstrip(" ,:;-") + ELLIPSIS
    first = text.split(None, 1)[0]
    return first if len(first) <= limit else text[:room] + ELLIPSIS.strip()


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
