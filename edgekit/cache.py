"""The stage cache: every stage output stored under a key made from what produced it.

A key hashes the stage name, edgekit's version, its slice of the recipe, the key of its
input, the data's content hash, the source of the code that computes it (``source_hash``: the
converter module, the runtime session, the zoo builder, ...) and the versions of the packages
it uses (for a format, those its row in the format table names). A rerun reuses every entry
whose key is unchanged; editing one converter recomputes that format's entries only. Entries
are folders written under a temporary name and renamed into
place, so a build killed at any moment never leaves an entry a rerun would trust; each records
the sha256 of its files, its stage and key, and is verified when read, so a damaged, swapped
or added-to one is recomputed, never used.
All stages go through ``Cache.fetch`` (get or compute).

The cache lives in ``$EDGEKIT_CACHE_DIR`` or ``~/.cache/edgekit`` (CI can keep it between jobs).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from edgekit import disk
from edgekit.errors import CorruptEntry, one_line

#: the cached stages, in build order
STAGES = ("data", "train", "compress", "convert", "evaluate", "profile", "bench")
#: entries beside the stages (``info`` counts them, ``clear`` empties them): report plots by
#: what they show (edgekit.report.html) and this machine's precision speed probes (edgekit.convert.auto)
AUXILIARY = ("plots", "probes")

T = TypeVar("T")


def default_root() -> Path:
    return Path(os.environ.get("EDGEKIT_CACHE_DIR") or Path.home() / ".cache" / "edgekit")


def make_key(stage: str, **parts: Any) -> str:
    """A stable hash of the stage, edgekit's version and everything that decides its output."""
    from edgekit import __version__

    text = json.dumps({"stage": stage, "edgekit": __version__, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


#: module name -> sha256 of its file(s); source files do not change under a running build
_SOURCE_HASHES: dict[str, str] = {}


def source_hash(*modules: str) -> str:
    """A hash of the source files of ``modules``, for the key of what they compute.

    Args:
        modules: importable module names (``edgekit.convert.tflite``); a package stands for its
            ``__init__.py``; ``package.*`` for every module under the package.

    Raises:
        ValueError: a module that cannot be found or has no source file: a key must never
            silently stop depending on the code it names.
    """
    digest = hashlib.sha256()
    for name in modules:
        if name not in _SOURCE_HASHES:
            _SOURCE_HASHES[name] = _hash_files(name, _source_files(name))
        digest.update(f"{name}={_SOURCE_HASHES[name]};".encode())
    return digest.hexdigest()[:32]


def _source_files(name: str) -> list[Path]:
    import importlib.util

    package = name.endswith(".*")
    module = name[:-2] if package else name
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise ValueError(f"cannot hash the source of {module}: {exc}") from None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise ValueError(f"cannot hash the source of {module}: no source file found")
    origin = Path(spec.origin)
    if package:
        if not spec.submodule_search_locations:
            raise ValueError(f"cannot hash {name}: {module} is a module, not a package")
        return sorted(origin.parent.rglob("*.py"))
    return [origin]


def _hash_files(name: str, files: list[Path]) -> str:
    digest = hashlib.sha256()
    root = Path(os.path.commonpath([str(f.parent) for f in files]))
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def fingerprint(*arrays: np.ndarray) -> str:
    """Content hash of arrays (shape, dtype and bytes)."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        # The bytes in place (a C-contiguous view, no copy): tobytes() copied whole splits.
        digest.update(array.reshape(-1).view(np.uint8))
    return digest.hexdigest()[:32]


#: written last into every entry: the sha256 of each of its files
MANIFEST = "entry.json"
#: marks a folder as an edgekit cache root (https://bford.info/cachedir/)
MARKER = "CACHEDIR.TAG"
MARKER_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
               "# This file is a cache directory tag created by edgekit (the stage cache).\n"
               "# For information about cache directory tags, see https://bford.info/cachedir/\n")
#: a temporary folder this old is a killed writer's, whatever its pid says (pids are per machine)
STALE_S = 3600.0
#: how often a read retries when a concurrent writer replaced the entry while it was being read
READ_TRIES = 3


@dataclass
class Cache:
    """A folder of finished stage outputs, ``<root>/<stage>/<key>/``.

    Every entry holds ``entry.json`` (the sha256 of each of its files), written last inside a
    temporary folder that is then renamed into place: a reader sees a complete entry or none.
    An entry is verified whenever it is read; one that fails is discarded and recomputed.
    When ``enabled`` is False (``--fresh``) nothing is read and every write replaces its entry.
    """

    root: Path = field(default_factory=default_root)
    enabled: bool = True
    #: what this build did per stage output: {"stage", "name", "key", "reused"}
    events: list[dict] = field(default_factory=list)
    #: where the one warning line about a discarded entry goes (the build log during a build)
    log: Callable[[str], None] = field(default=lambda message: print(message, file=sys.stderr), repr=False)
    #: called with the stage's name before a stage output is computed rather than read (a build
    #: takes this machine's CPU lock there: what comes from the cache waits for nobody)
    before_compute: Callable[[str], None] | None = field(default=None, repr=False)

    def entry(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def fetch(self, stage: str, key: str, name: str, *, load: Callable[[Path], T], compute: Callable[[], T],
              store: Callable[[T, Path], None], keep: Callable[[T], bool] = lambda value: True,
              holds: dict[str, Any] | None = None) -> tuple[T, bool]:
        """The one get-or-compute of every stage.

        Args:
            stage: one of ``STAGES`` (or ``AUXILIARY``).
            key: the entry's key (``make_key``).
            name: what the entry is, for the log and ``events`` (``tflite-int8``).
            load: reads the value from a verified entry folder; any exception counts as corrupt.
            compute: makes the value when there is no usable entry; its exceptions propagate.
            store: writes the value into an (empty, temporary) entry folder.
            keep: whether a computed value is worth caching (a failed measurement is not).
            holds: what the entry holds beyond its name (a variant's model, format and
                precision), recorded in its manifest for whoever inspects the cache.

        Returns:
            (value, whether it came from the cache).
        """
        if self.enabled:
            for _ in range(READ_TRIES):
                try:
                    value = self._read(stage, key, load)
                except _Replaced:  # a concurrent writer swapped the entry mid-read: read the new one
                    continue
                except CorruptEntry as exc:
                    self.log(f"[cache] {stage} entry {key} for {name} is {exc}; recomputing")
                    break
                if value is not _MISS:
                    self.events.append({"stage": stage, "name": name, "key": key, "reused": True})
                    return value, True
                break
        if self.before_compute is not None:
            self.before_compute(stage)
        value = compute()
        if keep(value):
            try:
                self.put(stage, key, name, lambda folder: store(value, folder), holds)
            except OSError as exc:  # a full or read-only cache disk costs the reuse, not the result
                room = f", {disk.free_space(self.root)} in {self.root}" if disk.no_space(exc) else ""
                self.log(f"[cache] could not store the {stage} entry for {name} ({one_line(exc, 200)}{room}); "
                         "the next build computes it again")
        return value, False

    def _read(self, stage: str, key: str, load: Callable[[Path], T]):
        """``load(entry)`` of a verified entry, or ``_MISS``; a corrupt entry is moved away.

        Raises:
            _Replaced: the entry was replaced while it was read (what was read may mix two entries).
            CorruptEntry: the entry failed verification or ``load``.
        """
        folder = self.entry(stage, key)
        identity = _identity(folder)
        if identity is None or _unbound(folder):
            return _MISS  # none, or one from an edgekit that did not record its key: put() replaces it
        try:
            verify(folder, stage, key)
            value = load(folder)
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with an entry, it is recomputed
            from edgekit import interrupts

            interrupts.reraise_if_interrupted()  # a Ctrl-C cut short inside load: the entry is fine
            if _identity(folder) != identity:
                raise _Replaced() from None
            if _outside(exc, folder) or disk.no_space(exc):  # e.g. the run directory is full: not the entry's fault
                raise
            self._discard(folder, identity)
            raise CorruptEntry(f"corrupt ({exc})" if isinstance(exc, CorruptEntry) else f"unreadable ({one_line(exc, 200)})") from None
        if _identity(folder) != identity:  # an entry never comes back once moved: same identity, same entry
            raise _Replaced()
        return value

    def put(self, stage: str, key: str, name: str, fill: Callable[[Path], None],
            holds: dict[str, Any] | None = None) -> Path:
        """Create an entry: ``fill(folder)`` writes into a temporary folder, renamed when done.

        A good entry already in place is kept (a concurrent writer of the same key was first) unless
        the cache is disabled (``--fresh``); a corrupt one is replaced. Never deletes before the
        replacement is complete, so a reader sees the old entry, the new one, or (for an instant) none.
        """
        self.events.append({"stage": stage, "name": name, "key": key, "reused": False})
        final = self.entry(stage, key)
        self._make_root()
        final.parent.mkdir(parents=True, exist_ok=True)
        sweep(final.parent)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix("tmp", key), dir=final.parent))
        try:
            fill(tmp)
            write_manifest(tmp, stage, key, {"name": name, **(holds or {})})
            if not _rename(tmp, final):  # an entry is in place already
                if self.enabled and _verified(final, stage, key):
                    return final  # the other writer's entry is as good as ours: ours is discarded
                self._discard(final, _identity(final))
                _rename(tmp, final)  # fails only if another writer got in between: then theirs stays
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def _discard(self, folder: Path, identity: tuple | None) -> None:
        """Move ``folder`` aside (atomically, so no reader sees it half deleted), then delete it.
        Only when it is still the entry that was judged (``identity``): never a newer good one."""
        if identity is None or _identity(folder) != identity:
            return
        aside = folder.parent / (_temp_prefix("old", folder.name) + uuid.uuid4().hex[:8])
        try:
            os.rename(folder, aside)
        except OSError:
            return  # gone already, or someone else moved it
        shutil.rmtree(aside, ignore_errors=True)

    def _make_root(self) -> None:
        """Mark the root as edgekit's when edgekit creates it (or finds it empty, or it is the
        default ~/.cache/edgekit): never tag a folder the user already keeps other things in."""
        fresh = not self.root.exists() or not any(self.root.iterdir())
        self.root.mkdir(parents=True, exist_ok=True)
        marker = self.root / MARKER
        if (fresh or self._is_home_default()) and not marker.exists():
            marker.write_text(MARKER_TEXT)

    def _is_home_default(self) -> bool:
        return self.root.expanduser().absolute() == Path.home() / ".cache" / "edgekit"

    def is_marked(self) -> bool:
        """Whether ``root`` carries edgekit's cache directory tag (~/.cache/edgekit is edgekit's
        whether or not an older edgekit wrote the tag)."""
        if self._is_home_default():
            return True
        try:
            return "edgekit" in (self.root / MARKER).read_text()
        except OSError:
            return False

    def reused(self, stage: str) -> list[str]:
        return [e["name"] for e in self.events if e["stage"] == stage and e["reused"]]

    def name_entry(self, key: str, names: list[str]) -> None:
        """Record the entry ``key`` (fetched once) under each of ``names``: one bench entry holds
        every row of an interleaving target, and results.json lists what was reused by row."""
        hits = [e for e in self.events if e["key"] == key]
        self.events = [e for e in self.events if e["key"] != key] + [{**e, "name": n} for e in hits for n in names]

    def reused_by_stage(self) -> dict[str, list[str]]:
        """What this build took from the cache, per stage (results.json ``reused``)."""
        return {stage: self.reused(stage) for stage in STAGES}

    def info(self) -> dict[str, dict[str, int]]:
        """Entries and bytes per stage (only edgekit's stage folders are counted)."""
        out: dict[str, dict[str, int]] = {}
        for stage in (*STAGES, *AUXILIARY):
            folder = self.root / stage
            if not folder.is_dir():
                continue
            entries = [e for e in folder.iterdir() if e.is_dir() and not e.name.startswith(".")]
            size = sum(f.stat().st_size for e in entries for f in e.rglob("*") if f.is_file())
            out[stage] = {"entries": len(entries), "bytes": size}
        return out

    def clear(self) -> int:
        """Remove every entry (edgekit's stage folders; any other file in the root stays).

        Returns:
            How many entries were removed.

        Raises:
            InputError: the root exists but is not marked as an edgekit cache.
        """
        if not self.root.exists():
            return 0
        if not self.is_marked():
            from edgekit.errors import InputError

            raise InputError(
                f"{self.root} is not an edgekit cache folder (expected the {MARKER} file edgekit writes when it "
                f"creates one), so nothing was removed; point EDGEKIT_CACHE_DIR at a folder edgekit created, or "
                f"remove its {', '.join(s + '/' for s in STAGES)} folders yourself"
            )
        count = sum(v["entries"] for v in self.info().values())
        sweep(self.root, legacy=False)  # the root may hold the user's own hidden folders
        for stage in (*STAGES, *AUXILIARY):
            folder = self.root / stage
            aside = self.root / (_temp_prefix("clear", stage) + uuid.uuid4().hex[:8])
            try:  # renamed first, so a build reading meanwhile sees a miss, not half an entry
                os.rename(folder, aside)
            except FileNotFoundError:
                continue
            shutil.rmtree(aside, ignore_errors=True)
        return count


class _Replaced(Exception):
    """The entry changed under a reader (a concurrent writer replaced it)."""


#: what ``Cache._read`` returns when there is no entry
_MISS = object()


def _outside(exc: BaseException, folder: Path) -> bool:
    """Whether ``exc`` is an OS error about a file outside the entry (where ``load`` copies to)."""
    name = getattr(exc, "filename2", None) or getattr(exc, "filename", None)
    if not isinstance(exc, OSError) or not name:
        return False
    try:
        Path(name).resolve().relative_to(folder.resolve())
    except ValueError:
        return True
    return False


def _identity(folder: Path) -> tuple | None:
    """Which entry is at ``folder`` now (None: none): its inode, change time and the random id in
    its manifest. Inodes of deleted folders are reused and change times are coarse; the id is not."""
    try:
        stat = folder.stat()
    except OSError:
        return None
    try:
        entry_id = json.loads((folder / MANIFEST).read_text()).get("id")
    except (OSError, ValueError, AttributeError):
        entry_id = None
    return stat.st_dev, stat.st_ino, stat.st_ctime_ns, entry_id


def _rename(source: Path, target: Path) -> bool:
    """Rename a folder onto ``target``; False when ``target`` is a non-empty folder already."""
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return False
        raise
    return True


def file_sha256(path: Path) -> str:
    """The sha256 of a file's content, read in 1 MiB blocks: a large file is never held whole."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, stage: str | None = None, key: str | None = None,
                   holds: dict[str, Any] | None = None) -> None:
    """Record the sha256 of every file in ``folder`` (called last, before the rename), a random
    id that tells this entry from any other written under the same key, and what the entry is:
    its stage, its key and what it holds (``{"name": "tflite-int8", "format": ...}``). An entry
    read under another stage or key (two entries swapped, one copied by hand) is then refused."""
    files = sorted(f for f in _entry_files(folder) if f.name != MANIFEST)
    hashes = {f.relative_to(folder).as_posix(): file_sha256(f) for f in files}
    record = {"id": uuid.uuid4().hex, "stage": stage, "key": key, "holds": holds or {}, "files": hashes}
    (folder / MANIFEST).write_text(json.dumps(record, indent=1))


def _entry_files(folder: Path) -> list[Path]:
    """Every file under ``folder``, links included as files: no link is followed."""
    found = []
    for root, dirs, files in os.walk(folder):
        found += [Path(root) / name for name in files]
        found += [Path(root) / name for name in dirs if (Path(root) / name).is_symlink()]
    return found


def _unbound(folder: Path) -> bool:
    """Whether the entry's manifest records no key (written by an edgekit before entries did)."""
    try:
        return "key" not in json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError, TypeError):
        return False  # no readable manifest: verify() says what is wrong with it


def verify(folder: Path, stage: str | None = None, key: str | None = None) -> None:
    """Check an entry: written for ``stage`` and ``key`` (when given), every file it lists
    present with its sha256, and nothing else in it (no file it does not list, no link).

    Raises:
        CorruptEntry: no manifest (entries from before checksums count as corrupt), an unreadable
            one, another stage or key, a missing, changed or unlisted file, or a link; the
            message names it.
    """
    try:
        record = json.loads((folder / MANIFEST).read_text())
        hashes = record["files"]
    except FileNotFoundError:
        raise CorruptEntry(f"no {MANIFEST}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptEntry(f"{MANIFEST} unreadable: {one_line(exc, 200)}") from None
    if not isinstance(hashes, dict) or not hashes:
        raise CorruptEntry(f"{MANIFEST} lists no files")
    if stage is not None and (record.get("stage"), record.get("key")) != (stage, key):
        holds = record.get("holds") if isinstance(record.get("holds"), dict) else {}
        raise CorruptEntry(f"written for the {record.get('stage')} entry {record.get('key')}"
                           f"{' (' + str(holds.get('name')) + ')' if holds.get('name') else ''}, not this one: "
                           "entries moved or copied by hand")
    for path in _entry_files(folder):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink():
            raise CorruptEntry(f"{name}: a link (an entry holds plain files only)")
        if name != MANIFEST and name not in hashes:
            raise CorruptEntry(f"{name}: not listed in {MANIFEST} (added after the entry was written)")
    for name, expected in hashes.items():
        path = folder / name
        if not path.is_file():
            raise CorruptEntry(f"{name}: missing")
        if file_sha256(path) != expected:
            raise CorruptEntry(f"{name}: sha256 mismatch")


def _verified(folder: Path, stage: str | None = None, key: str | None = None) -> bool:
    try:
        verify(folder, stage, key)
    except (CorruptEntry, OSError):
        return False
    return True


_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _temp_prefix(kind: str, key: str) -> str:
    """``.tmp.<key>.<host>.<pid>.``: hidden, and says who wrote it, so sweep() can tell a killed
    writer's folder from a live one."""
    return f".{kind}.{key}.{_HOST}.{os.getpid()}."


def sweep(folder: Path, legacy: bool = True, now: float | None = None) -> None:
    """Remove the temporary folders of killed writers in ``folder``: those of a dead process on
    this machine, and those older than ``STALE_S`` (other machines). ``legacy``: also any hidden
    folder older than that (older edgekits named them ``.<key>.<random>``); only in stage folders."""
    now = time.time() if now is None else now
    for path in folder.glob(".*"):
        parts = path.name.split(".")
        ours = len(parts) == 6 and parts[1] in ("tmp", "old", "clear") and parts[4].isdigit()
        if not (ours or legacy) or not path.is_dir():
            continue
        try:
            age = now - path.stat().st_mtime
        except OSError:
            continue
        if (ours and parts[3] == _HOST and not _alive(int(parts[4]))) or age > STALE_S:
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but another user's
        return True
    return True
