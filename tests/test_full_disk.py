"""A full disk under the run directory is one line (exit 2) naming the file, the room left and
the stage, from the run directory's first file on, and the stage cache is left as it was.

The run directory sits on a tmpfs of a few KiB mounted in a private mount namespace
(``unshare -rm``: no mount is left behind); where namespaces are not allowed, a file-size limit
(RLIMIT_FSIZE: every write past it fails with EFBIG) stands in for the full disk.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edgekit.cache import AUXILIARY, verify


@functools.lru_cache(maxsize=1)
def _mounts() -> bool:
    """Whether a tmpfs can be mounted in a private mount namespace here."""
    if shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as folder:
        probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=4k none {folder}"],
                               capture_output=True, timeout=30)
    return probe.returncode == 0


def _build_on_small_disk(recipe: Path, small: Path, kib: int, env: dict) -> subprocess.CompletedProcess:
    """``edgekit build RECIPE --out SMALL/run`` with SMALL holding ``kib`` KiB."""
    command = [sys.executable, "-m", "edgekit", "build", str(recipe), "--out", str(small / "run")]
    if _mounts():
        script = (f'mount -t tmpfs -o size={max(kib, 4)}k none "$1" && '
                  f'{"head -c 4096 /dev/zero > $1/filler 2>/dev/null; " if kib == 0 else ""}shift && exec "$@"')
        return subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(small), *command], capture_output=True,
                              text=True, env=env, timeout=300)

    def limit() -> None:  # no namespaces here: files may not grow past kib KiB
        resource.setrlimit(resource.RLIMIT_FSIZE, (kib * 1024, kib * 1024))

    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, preexec_fn=limit)


def _entries(cache: Path) -> dict[str, str]:
    return {f"{stage.name}/{entry.name}": (entry / "entry.json").read_text()
            for stage in cache.iterdir() if stage.is_dir() for entry in stage.iterdir()}


def _one_line(done: subprocess.CompletedProcess) -> str:
    output = (done.stdout + done.stderr).strip()
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


@pytest.mark.slow
def test_a_full_run_directory_is_one_line_and_the_cache_stays_as_it_was(tiny_run, tmp_path):
    """First with no room at all (the run directory's first file, recipe.yaml), then with room
    for a few files (the trained model copied out of the cache does not fit): each time the
    file, the room left, the stage and exit 2; every cache entry is still there and verifies."""
    cache = Path(shutil.copytree(tiny_run.recipe.parent / "cache", tmp_path / "cache"))  # the tiny build's entries
    env = {**os.environ, "EDGEKIT_CACHE_DIR": str(cache), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    before = _entries(cache)
    (tmp_path / "none").mkdir()
    line = _one_line(_build_on_small_disk(tiny_run.recipe, tmp_path / "none", 0, env))
    if _mounts():
        assert f"could not write {tmp_path / 'none' / 'run' / 'recipe.yaml'} (the run directory) during the data stage: " \
               "0 B free (No space left on device)" in line, line
    else:  # a file-size limit: every file of the process, the run directory's among them
        assert line.startswith("Error: disk full") and "(File too large)" in line and "during the data stage" in line, line
    (tmp_path / "some").mkdir()
    line = _one_line(_build_on_small_disk(tiny_run.recipe, tmp_path / "some", 48, env))
    if _mounts():
        assert "model.keras (the run directory) during the train stage: " in line, line  # copied out of the cache
    else:
        assert line.startswith("Error: disk full") and "free" in line, line
    # no entry discarded or replaced, and none added but an auxiliary one: the speed probe's answer
    # is kept per process (edgekit.convert.auto), so when an earlier build in the test process had
    # it, the tiny build's cache holds no probe entry and this build's process stores its own
    after = _entries(cache)
    assert {name: after.get(name) for name in before} == before
    assert all(name.split("/")[0] in AUXILIARY for name in set(after) - set(before)), sorted(set(after) - set(before))
    for name in before:
        verify(cache / name)
    assert json.loads((tiny_run.dir / "results.json").read_text())["rows"]  # the run it reused is untouched
