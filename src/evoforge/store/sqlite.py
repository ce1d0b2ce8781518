"""SQLite run store: one file per run (WAL journal), schema-versioned, one writer at a time.

The writer holds an exclusive ``flock`` on ``<db>.lock`` for as long as the store is open, so a
second driver on the same run gets a clear `StoreError` instead of interleaved writes.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from evoforge.errors import StoreError
from evoforge.search.evaluation import Evaluation
from evoforge.store.base import SCHEMA_VERSION, RunStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS genomes (key TEXT PRIMARY KEY, genome TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS evaluations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE REFERENCES genomes(key),
    generation INTEGER NOT NULL,
    status TEXT NOT NULL,
    duration_s REAL NOT NULL,
    evaluation TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS screenings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL REFERENCES genomes(key),
    fraction REAL NOT NULL,
    generation INTEGER NOT NULL,
    evaluation TEXT NOT NULL,
    UNIQUE (key, fraction)
);
CREATE TABLE IF NOT EXISTS batches (generation INTEGER PRIMARY KEY, batch TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS generations (generation INTEGER PRIMARY KEY, record TEXT NOT NULL);
"""


class SQLiteRunStore(RunStore):
    """Open (or create) the store at ``path``. ``readonly=True`` opens without the writer lock
    and refuses writes; it is what `evoforge show` uses while a run may be going on."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock_fd: int | None = None
        if readonly:
            if not self.path.exists():
                raise StoreError(f"no run store at {self.path}; check the run directory")
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._acquire_lock()
            self._db = sqlite3.connect(self.path, isolation_level=None)
        try:
            self._db.execute("PRAGMA busy_timeout=10000")
            self._check_schema()
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process kills
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StoreError(f"{self.path} is not an evoforge run store ({exc})") from None

    def _acquire_lock(self) -> None:
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(
                f"run store {self.path} is in use by another evoforge process; wait for it to finish or use another run directory"
            ) from None
        self._lock_fd = fd

    def _check_schema(self) -> None:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" in tables:
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = json.loads(row[0]) if row else None
            if version != SCHEMA_VERSION:
                self.close()
                raise StoreError(
                    f"run store {self.path} has schema version {version}, this evoforge reads version {SCHEMA_VERSION}; "
                    "open it with the evoforge version that wrote it"
                )
            if "screenings" not in tables and not self.readonly:  # stores written before multi-fidelity runs
                with self._tx():
                    self._db.execute(next(t for t in _SCHEMA.split(";") if "screenings" in t))
            return
        if tables:
            self.close()
            raise StoreError(f"{self.path} is an SQLite file but not an evoforge run store")
        if self.readonly:
            raise StoreError(f"run store {self.path} is empty")
        with self._tx():
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (json.dumps(SCHEMA_VERSION),))

    def _tx(self) -> _Transaction:
        if self.readonly:
            raise StoreError(f"run store {self.path} is open read-only")
        return _Transaction(self._db)

    def put_config(self, config: dict[str, Any]) -> None:
        with self._tx():
            if self._db.execute("SELECT 1 FROM meta WHERE key='config'").fetchone():
                raise StoreError("the run configuration is already written")
            self._db.execute("INSERT INTO meta VALUES ('config', ?)", (json.dumps(config),))

    def config(self) -> dict[str, Any] | None:
        config: dict[str, Any] | None = self.meta("config")
        return config

    def put_meta(self, key: str, value: Any) -> None:
        with self._tx():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def put_genome(self, key: str, genome_json: str) -> None:
        with self._tx():
            self._db.execute("INSERT OR IGNORE INTO genomes VALUES (?, ?)", (key, genome_json))

    def genome(self, key: str) -> str:
        row = self._db.execute("SELECT genome FROM genomes WHERE key=?", (key,)).fetchone()
        if row is None:
            raise StoreError(f"no genome {key!r} in this run")
        return str(row[0])

    def put_evaluation(self, key: str, evaluation: Evaluation, generation: int) -> None:
        try:
            with self._tx():
                self._db.execute(
                    "INSERT INTO evaluations (key, generation, status, duration_s, evaluation) VALUES (?, ?, ?, ?, ?)",
                    (key, generation, evaluation.status.value, evaluation.duration_s, evaluation.to_json()),
                )
        except sqlite3.IntegrityError:
            raise StoreError(f"genome {key} already has an evaluation") from None

    def evaluations(self) -> dict[str, Evaluation]:
        rows = self._db.execute("SELECT key, evaluation FROM evaluations ORDER BY seq")
        return {k: Evaluation.from_json(v) for k, v in rows}

    def evaluation_generations(self) -> dict[str, int]:
        return {k: int(g) for k, g in self._db.execute("SELECT key, generation FROM evaluations ORDER BY seq")}

    def put_screening(self, key: str, fraction: float, evaluation: Evaluation, generation: int) -> None:
        try:
            with self._tx():
                self._db.execute(
                    "INSERT INTO screenings (key, fraction, generation, evaluation) VALUES (?, ?, ?, ?)",
                    (key, float(fraction), generation, evaluation.to_json()),
                )
        except sqlite3.IntegrityError:
            raise StoreError(f"genome {key} already has an evaluation at fidelity {fraction}") from None

    def screenings(self) -> dict[float, dict[str, Evaluation]]:
        try:
            rows = self._db.execute("SELECT key, fraction, evaluation FROM screenings ORDER BY seq").fetchall()
        except sqlite3.OperationalError:  # a store written before multi-fidelity runs, opened read-only
            return {}
        out: dict[float, dict[str, Evaluation]] = {}
        for key, fraction, text in rows:
            out.setdefault(float(fraction), {})[key] = Evaluation.from_json(text)
        return out

    def put_batch(self, generation: int, batch: dict[str, Any]) -> None:
        with self._tx():
            self._db.execute("INSERT OR REPLACE INTO batches VALUES (?, ?)", (generation, json.dumps(batch)))

    def batch(self, generation: int) -> dict[str, Any] | None:
        row = self._db.execute("SELECT batch FROM batches WHERE generation=?", (generation,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put_generation(self, generation: int, record: dict[str, Any]) -> None:
        with self._tx():
            self._db.execute("INSERT OR REPLACE INTO generations VALUES (?, ?)", (generation, json.dumps(record)))

    def generations(self) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self._db.execute("SELECT record FROM generations ORDER BY generation")]

    def close(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
            self._db = None  # type: ignore[assignment]
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
