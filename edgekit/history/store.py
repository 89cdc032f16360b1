"""The results store: every recorded build's rows in one database table.

Where: a SQLite file (a path, or ``sqlite:///PATH``; the default ``$EDGEKIT_HISTORY``, else
``history.db`` in the stage cache's folder), through Python's own sqlite3 module: nothing to
install, nothing to start. Any other SQLAlchemy URL (``postgresql+psycopg://user@host/db`` for a
team; ``sqlite+pysqlite:///PATH`` goes through SQLAlchemy too) needs ``pip install
'keras-edgekit[history]'`` (SQLAlchemy and psycopg); without it such a URL is refused in one line.

One row per results row: keyed by recipe name and sha256, row id, target, device, commit,
environment and the time its rounds ended (``measured_at``, kept by the stage cache: a build
that reused a cached measurement records the same key again, and the insert does nothing).
Recording the same results twice is therefore a no-op, and concurrent builds writing at once
lose nothing: every insert is one transaction (SQLite: WAL, a writer waits up to 60 s for
another; PostgreSQL: its own locking), and a conflicting key is skipped, not an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from edgekit.errors import InputError, one_line

#: the variable that names the default store
ENV = "EDGEKIT_HISTORY"
TABLE = "edgekit_rows"
COLUMNS = ("recipe_name", "recipe_sha256", "row_id", "target", "device", "git_commit", "environment", "measured_at",
           "build_id", "finished_at", "recorded_at", "status", "variant_model", "variant_format", "variant_precision",
           "metric", "metric_value", "p50_ms", "p50_lo_ms", "p50_hi_ms", "runs", "size_bytes", "unstable",
           "round_p50_ms", "machine")
KEY = COLUMNS[:8]
SCHEMA = [
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        recipe_name VARCHAR(200) NOT NULL, recipe_sha256 VARCHAR(64) NOT NULL, row_id VARCHAR(400) NOT NULL,
        target VARCHAR(200) NOT NULL, device VARCHAR(200) NOT NULL, git_commit VARCHAR(64) NOT NULL,
        environment VARCHAR(32) NOT NULL, measured_at DOUBLE PRECISION NOT NULL, build_id VARCHAR(32) NOT NULL,
        finished_at DOUBLE PRECISION, recorded_at DOUBLE PRECISION NOT NULL, status VARCHAR(20) NOT NULL,
        variant_model VARCHAR(200), variant_format VARCHAR(40), variant_precision VARCHAR(40), metric VARCHAR(60),
        metric_value DOUBLE PRECISION, p50_ms DOUBLE PRECISION, p50_lo_ms DOUBLE PRECISION, p50_hi_ms DOUBLE PRECISION,
        runs INTEGER, size_bytes BIGINT, unstable INTEGER, round_p50_ms TEXT, machine TEXT,
        PRIMARY KEY ({", ".join(KEY)}))""",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_series ON {TABLE} (recipe_name, row_id, target, measured_at)",
]
INSERT = (f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join(':' + c for c in COLUMNS)}) "
          "ON CONFLICT DO NOTHING")


def default_url() -> str:
    """``$EDGEKIT_HISTORY``, else ``history.db`` beside the stage cache's stages."""
    from edgekit.cache import default_root

    return os.environ.get(ENV) or str(default_root() / "history.db")


def open_store(url: str | None = None) -> Store:
    """The store at ``url`` (default ``default_url()``), its table made if missing.

    Raises:
        InputError: SQLAlchemy missing for a URL that needs it, or the database cannot be opened.
    """
    url = url or default_url()
    if "://" not in url or url.startswith("sqlite:///"):
        return SqliteStore(url[len("sqlite:///"):] if url.startswith("sqlite:///") else url)
    try:
        import sqlalchemy  # noqa: F401
    except ImportError:
        raise InputError(f"history {_shown(url)}: a database URL needs SQLAlchemy: pip install 'keras-edgekit[history]' "
                         "(a SQLite file needs nothing: --history PATH.db)") from None
    return SqlAlchemyStore(url)


def _shown(url: str) -> str:
    """The URL without its password."""
    head, at, tail = url.rpartition("@")
    if not at or "://" not in head:
        return url
    scheme, _, user = head.partition("://")
    return f"{scheme}://{user.split(':')[0]}@{tail}"


class Store:
    """What both back ends share: turning results into records, and reading series back."""

    url = ""

    def record(self, results: dict, run_dir: Path | str | None = None) -> tuple[int, int]:
        """Record every row of ``results`` (a build's results.json); returns (rows new, rows given).

        Raises:
            InputError: the database refused the write (one line).
        """
        records = to_records(results, run_dir)
        try:
            added = self._insert(records)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - any driver's error: one line naming the store
            raise InputError(f"history {_shown(self.url)}: could not record: {one_line(exc, 200)}") from None
        return added, len(records)

    def series(self, recipe: str | None = None, row_id: str | None = None, target: str | None = None,
               environment: str | None = None) -> list[dict[str, Any]]:
        """Stored rows, oldest first, narrowed by whichever of the arguments is given."""
        where, params = [], {}
        for column, value in (("recipe_name", recipe), ("row_id", row_id), ("target", target),
                              ("environment", environment)):
            if value is not None:
                where.append(f"{column} = :{column}")
                params[column] = value
        sql = (f"SELECT {', '.join(COLUMNS)} FROM {TABLE}" + (f" WHERE {' AND '.join(where)}" if where else "")
               + " ORDER BY measured_at, recorded_at")
        try:
            return [dict(zip(COLUMNS, values)) for values in self._select(sql, params)]
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"history {_shown(self.url)}: could not read: {one_line(exc, 200)}") from None

    def _insert(self, records: list[dict]) -> int:
        raise NotImplementedError

    def _select(self, sql: str, params: dict) -> list[tuple]:
        raise NotImplementedError


class SqliteStore(Store):
    """A SQLite file through the standard library."""

    def __init__(self, path: str):
        import sqlite3

        self.path = Path(path).expanduser()
        self.url = str(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
                for statement in SCHEMA:
                    db.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise InputError(f"history {self.path}: cannot open it as a SQLite database ({one_line(exc, 160)}); "
                             "expected a writable .db file path or a database URL") from None

    def _connect(self):
        import sqlite3

        db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)  # explicit transactions below
        return _Closing(db)

    def _insert(self, records: list[dict]) -> int:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")  # one writer at a time; the others wait (timeout) instead of failing
            before = db.total_changes
            db.executemany(INSERT, records)
            db.execute("COMMIT")
            return db.total_changes - before

    def _select(self, sql: str, params: dict) -> list[tuple]:
        with self._connect() as db:
            return db.execute(sql, params).fetchall()


class _Closing:
    """A sqlite3 connection that is closed (not only committed) at the end of a with block."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        return self.db

    def __exit__(self, *exc):
        if exc[0] is not None and self.db.in_transaction:
            self.db.execute("ROLLBACK")
        self.db.close()


class SqlAlchemyStore(Store):
    """Any database SQLAlchemy reaches (PostgreSQL for a team)."""

    def __init__(self, url: str):
        import sqlalchemy

        self.url = url
        try:
            self.engine = sqlalchemy.create_engine(url, pool_pre_ping=True)
            for attempt in range(3):  # two builds making the table at once: one of them loses the race, then finds it
                try:
                    with self.engine.begin() as db:
                        for statement in SCHEMA:
                            db.execute(sqlalchemy.text(statement))
                    break
                except sqlalchemy.exc.IntegrityError:
                    if attempt == 2:
                        raise
                    time.sleep(0.2)
        except Exception as exc:  # noqa: BLE001 - a bad URL, a missing driver, a refused connection
            raise InputError(f"history {_shown(url)}: cannot open it ({one_line(exc, 200)}); check the URL "
                             "(e.g. postgresql+psycopg://USER@HOST/DB) and that the server runs") from None

    def _insert(self, records: list[dict]) -> int:
        import sqlalchemy

        with self.engine.begin() as db:
            return sum(db.execute(sqlalchemy.text(INSERT), record).rowcount for record in records)

    def _select(self, sql: str, params: dict) -> list[tuple]:
        import sqlalchemy

        with self.engine.connect() as db:
            return [tuple(row) for row in db.execute(sqlalchemy.text(sql), params)]


def environment_key(results: dict, row: dict) -> tuple[str, str]:
    """(a short key, a readable name) of where ``row`` was timed: this machine's CPU and ISA
    flags for its own targets, the device's (a pool member's) for a device row."""
    block = (results.get("targets") or {}).get(row.get("target")) or {}
    if "members" in block:  # a pool: the member that timed the row
        block = (block.get("members") or {}).get(row.get("device")) or {}
    if "device" not in block:  # a target on this machine (a device's block names the device)
        block = results.get("environment") or {}
    what = {"cpu": block.get("cpu"), "isa": block.get("isa"), "machine": block.get("machine")}
    key = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
    return key, str(block.get("cpu") or "unknown")


def to_records(results: dict, run_dir: Path | str | None = None) -> list[dict]:
    """One record per results row (``COLUMNS``)."""
    recipe = results.get("recipe") or {}
    finished = results.get("finished_at")
    finished = float(finished) if isinstance(finished, (int, float)) else time.time()
    recorded = time.time()
    env_keys = {row["id"]: environment_key(results, row) for row in results.get("rows", [])}
    build_id = hashlib.sha256(json.dumps([recipe.get("name"), recipe.get("sha256"), finished, str(run_dir or "")],
                                         default=str).encode()).hexdigest()[:24]
    metric = results.get("primary_metric")
    out = []
    for row in results.get("rows", []):
        lat, timing = row.get("latency_ms") or {}, row.get("timing") or {}
        interval = timing.get("p50_ci95_ms") or [None, None]
        key, machine = env_keys[row["id"]]
        out.append({
            "recipe_name": str(recipe.get("name") or ""), "recipe_sha256": str(recipe.get("sha256") or ""),
            "row_id": row["id"], "target": str(row.get("target") or ""), "device": str(row.get("device") or ""),
            "git_commit": str(results.get("commit") or ""), "environment": key,
            "measured_at": float(row.get("measured_at") or finished), "build_id": build_id, "finished_at": finished,
            "recorded_at": recorded, "status": row.get("status") or "", "variant_model": row.get("model"),
            "variant_format": row.get("format"), "variant_precision": row.get("precision"), "metric": metric,
            "metric_value": _number((row.get("metrics") or {}).get(metric)), "p50_ms": _number(lat.get("p50")),
            "p50_lo_ms": _number(interval[0]), "p50_hi_ms": _number(interval[1]),
            "runs": lat.get("runs"), "size_bytes": row.get("size_bytes"), "unstable": int(bool(timing.get("unstable"))),
            "round_p50_ms": json.dumps(timing.get("round_p50_ms") or []), "machine": machine,
        })
    return out


def _number(value) -> float | None:
    """A finite float, or None (NaN and infinity are no measurement to keep)."""
    import math

    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
