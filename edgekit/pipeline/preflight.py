"""Checks made before a build starts, so that it cannot fail late for a reason known early:
folders it cannot write, and recipe paths that point outside the recipe's folder (allowed,
but said out loud, since a recipe from someone else could read any file the user can)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgekit.errors import InputError


def check_writable(folder: Path, what: str, fix: str) -> None:
    """Create ``folder`` if needed and prove a file can be written in it.

    Raises:
        InputError: one line naming ``what``, the folder, the OS's reason, and ``fix``.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".edgekit-probe-"):
            pass
    except (OSError, ValueError) as exc:  # read-only, a file in the way, NUL byte, name too long
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(f"{what}: cannot write to {str(folder)[:200]} ({reason}); {fix}") from None


def before_build(recipe, run_dir: Path, cache_used: bool, say) -> None:
    """Fail now, in one line, for what would otherwise fail after training; ``say`` gets one line
    per recipe path outside the recipe's folder.

    Raises:
        InputError: the run directory, or the stage cache when ``cache_used``, cannot be written.
    """
    from edgekit.cache import default_root

    for line in outside_paths(recipe):
        say(line)
    check_writable(run_dir, "--out", "choose a writable folder with --out DIR")
    if cache_used:
        check_writable(default_root(), "stage cache", "set EDGEKIT_CACHE_DIR to a writable folder, or build with --fresh")


def outside_paths(recipe) -> list[str]:
    """One line per recipe path that is absolute or leads out of the recipe's folder."""
    if recipe.path is None:
        return []
    home = recipe.path.parent
    lines = []
    for field, value in (("data.path", recipe.data.path), ("model.file", recipe.model.file)):
        if value is not None and not _inside(Path(value), home):
            lines.append(f"[recipe] {field} reads {value}, outside the recipe's folder {home}")
    return lines


def _inside(path: Path, folder: Path) -> bool:
    try:
        return os.path.commonpath([path.resolve(), folder.resolve()]) == str(folder.resolve())
    except ValueError:  # different drives on Windows
        return False
