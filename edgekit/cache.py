"""The stage cache: every stage output stored under a key made from what produced it.

A key hashes the stage name, its slice of the recipe, the key of its input, the data's
content hash and the versions of the libraries the stage uses. A rerun reuses every entry
whose key is unchanged. Entries are folders written under a temporary name and renamed into
place, so a build killed at any moment never leaves an entry a rerun would trust.

The cache lives in ``$EDGEKIT_CACHE_DIR`` or ``~/.cache/edgekit`` (CI can keep it between jobs).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np


#: the cached stages, in build order
STAGES = ("train", "compress", "convert", "evaluate", "bench")


def default_root() -> Path:
    return Path(os.environ.get("EDGEKIT_CACHE_DIR") or Path.home() / ".cache" / "edgekit")


def make_key(stage: str, **parts: Any) -> str:
    """A stable hash of the stage and everything that decides its output."""
    text = json.dumps({"stage": stage, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def fingerprint(*arrays: np.ndarray) -> str:
    """Content hash of arrays (shape, dtype and bytes)."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:32]


@dataclass
class Cache:
    """A folder of finished stage outputs, ``<root>/<stage>/<key>/``."""

    root: Path = field(default_factory=default_root)
    enabled: bool = True
    #: what this build did per stage output: {"stage", "name", "key", "reused"}
    events: list[dict] = field(default_factory=list)

    def entry(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def get(self, stage: str, key: str) -> Path | None:
        """The finished entry folder, or None (always None when the cache is disabled)."""
        path = self.entry(stage, key)
        return path if self.enabled and path.is_dir() else None

    def hit(self, stage: str, key: str, name: str) -> None:
        """Record that ``name`` was taken from the cache (call after the entry was loaded)."""
        self.events.append({"stage": stage, "name": name, "key": key, "reused": True})

    def put(self, stage: str, key: str, name: str, fill: Callable[[Path], None]) -> Path:
        """Create an entry: ``fill(folder)`` writes into a temporary folder, renamed when done."""
        self.events.append({"stage": stage, "name": name, "key": key, "reused": False})
        final = self.entry(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
        try:
            fill(tmp)
            if final.exists():  # written meanwhile (or --fresh): the newest result wins
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def reused(self, stage: str) -> list[str]:
        return [e["name"] for e in self.events if e["stage"] == stage and e["reused"]]

    def reused_by_stage(self) -> dict[str, list[str]]:
        """What this build took from the cache, per stage (results.json ``reused``)."""
        return {stage: self.reused(stage) for stage in STAGES}

    def info(self) -> dict[str, dict[str, int]]:
        """Entries and bytes per stage."""
        out: dict[str, dict[str, int]] = {}
        if not self.root.is_dir():
            return out
        for stage in sorted(p for p in self.root.iterdir() if p.is_dir()):
            entries = [e for e in stage.iterdir() if e.is_dir() and not e.name.startswith(".")]
            size = sum(f.stat().st_size for e in entries for f in e.rglob("*") if f.is_file())
            out[stage.name] = {"entries": len(entries), "bytes": size}
        return out

    def clear(self) -> int:
        """Remove every entry; returns how many were removed."""
        count = sum(v["entries"] for v in self.info().values())
        if self.root.is_dir():
            shutil.rmtree(self.root)
        return count

