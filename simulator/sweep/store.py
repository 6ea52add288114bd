"""The results of a sweep: an SQLite database (``OUT/results.sqlite``, WAL mode), one row per point.

Why a database and not a file rewritten now and then: finished points are committed in small
transactions (at most a quarter second of them, :mod:`simulator.sweep.execute`), so a kill loses
only that and the points in flight, never rows already written; two writers
cannot erase each other's rows (an upsert keyed by ``point_id`` never replaces an ``ok`` row); and
readers (``besa report``, a notebook, ``sqlite3 OUT/results.sqlite``) query while the sweep runs —
in WAL mode a reader never blocks the writer nor waits for it.

Table ``results``: ``point_id`` (primary key), the parameter columns (``preset``, ``mode``,
``workload``, ``tokens``, ``seed`` and every swept hardware field), the result columns
(:data:`simulator.schema.SWEEP_TOTAL_FIELDS`), ``status`` (``ok`` / ``error``), ``error`` (one line, empty when ok),
``wall_s`` (seconds of simulation per point) and ``finished_at`` (Unix time).  Columns are added
as new swept fields appear; SQLite's dynamic typing keeps each value's own type.  Table ``meta``:
``format`` and ``version`` of this layout.

``results.parquet`` / ``results.csv`` are EXPORTS of the table (:func:`export_results`), written
atomically at the end of a sweep and by ``besa sweep --export DIR``.
"""

from __future__ import annotations

import io
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from besa_common.errors import UserError
from besa_common.fileio import atomic_write_bytes, atomic_write_text
from simulator.schema import SWEEP_FIRST_COLUMNS

DB_NAME = "results.sqlite"
FORMAT, VERSION = "besa-sweep-results", "1"


def db_path(out: str | os.PathLike) -> Path:
    return Path(out) / DB_NAME


def _quote(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def _plain(v: Any) -> Any:
    """numpy scalars -> Python (sqlite3 binds only Python types); NaN stays NaN (stored as NULL)."""
    return v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes)) else v


class ResultStore:
    """The writer's handle on ``OUT/results.sqlite`` (the caller holds the directory's lock).

    ``add(rows)`` commits a batch of finished points in ONE transaction; ``finished_ids()`` are the
    points with ``status = "ok"`` (failed points are retried).
    """

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        self.path = db_path(out)
        fresh = not self.path.exists()
        try:
            self.con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            self.con.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a committed transaction survives a killed process (only an OS
            # crash may lose the last ones), at a fraction of FULL's fsyncs.
            self.con.execute("PRAGMA synchronous=NORMAL")
            self.con.execute("BEGIN IMMEDIATE")
            self.con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.con.execute("CREATE TABLE IF NOT EXISTS results (point_id TEXT PRIMARY KEY NOT NULL, status TEXT, error TEXT)")
            self._check_format()
            self.con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path}: not a sweep results database ({exc}); move it away to start afresh") from None
        self.columns = self._columns()
        if fresh:
            self._import_legacy()

    def _check_format(self) -> None:
        meta = dict(self.con.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            self.con.executemany("INSERT INTO meta VALUES (?, ?)", [("format", FORMAT), ("version", VERSION)])
        elif meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise UserError(f"{self.path}: format {meta.get('format')!r} version {meta.get('version')!r}, this build reads {FORMAT!r} version {VERSION}")

    def _columns(self) -> list[str]:
        return [r[1] for r in self.con.execute("PRAGMA table_info(results)")]

    def _ensure_columns(self, names: Iterable[str]) -> None:
        missing = [n for n in dict.fromkeys(names) if n not in self.columns]
        for n in missing:
            try:
                self.con.execute(f"ALTER TABLE results ADD COLUMN {_quote(n)}")
            except sqlite3.OperationalError as exc:  # another writer added it meanwhile
                if "duplicate column" not in str(exc):
                    raise
        if missing:
            self.columns = self._columns()

    def _import_legacy(self) -> None:
        """An output folder of the earlier layout (results.parquet only): take its rows over once."""
        for name in ("results.parquet", "results.csv"):
            p = self.out / name
            if p.is_file():
                try:
                    df = read_export(p)
                except Exception as exc:
                    raise UserError(f"{p} is unreadable ({type(exc).__name__}); move it away to start the sweep afresh") from None
                if "point_id" in df.columns:
                    self.add(df.astype(object).where(df.notna(), None).to_dict("records"))
                return

    def _upsert_sql(self) -> str:
        cols = tuple(self.columns)
        if getattr(self, "_sql_cols", None) != cols:  # rebuilt only when a column was added
            names = ", ".join(_quote(c) for c in cols)
            updates = ", ".join(f"{_quote(c)} = excluded.{_quote(c)}" for c in cols if c != "point_id")
            self._sql = (
                f"INSERT INTO results ({names}) VALUES ({', '.join('?' * len(cols))}) "
                f"ON CONFLICT(point_id) DO UPDATE SET {updates} WHERE results.status IS NOT 'ok'"
            )
            self._sql_cols = cols
        return self._sql

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Upsert ``rows`` in one transaction.  An existing row is replaced only when it is not
        ``ok`` (a failed point retried): an ``ok`` row is never lost or rewritten."""
        if not rows:
            return
        self.con.execute("BEGIN IMMEDIATE")
        try:
            have = set(self.columns)
            new = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in have]  # row order
            if new:
                self._ensure_columns(new)
            sql, cols = self._upsert_sql(), self.columns
            self.con.executemany(sql, [[_plain(r.get(c)) for c in cols] for r in rows])
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def finished_ids(self) -> set[str]:
        return {r[0] for r in self.con.execute("SELECT point_id FROM results WHERE status = 'ok'")}

    def frame(self) -> pd.DataFrame:
        return _frame(self.con)

    def close(self) -> None:
        self.con.close()


def _frame(con: sqlite3.Connection) -> pd.DataFrame:
    cur = con.execute("SELECT * FROM results ORDER BY rowid")
    cols = [d[0] for d in cur.description]
    df = pd.DataFrame.from_records(cur.fetchall(), columns=cols)
    order = [c for c in SWEEP_FIRST_COLUMNS if c in cols] + [c for c in cols if c not in SWEEP_FIRST_COLUMNS]
    return df[order]


def read_db(path: str | os.PathLike) -> pd.DataFrame:
    """Every row of a results database, in the order the points finished.  Read-only: safe while a
    sweep writes it (WAL: the reader sees the last committed state and blocks nobody)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such results database")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    except sqlite3.Error as exc:
        raise UserError(f"{path}: cannot open ({exc})") from None
    try:
        return _frame(con)
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{path}: not a sweep results database ({exc})") from None
    finally:
        con.close()


def read_export(path: str | os.PathLike) -> pd.DataFrame:
    """A ``results.parquet`` / ``results.csv`` export (Parquet read through ONE open(): a concurrent
    atomic replace must not mix an old and a new file)."""
    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(io.BytesIO(path.read_bytes()))
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def read_results(out: str | os.PathLike) -> pd.DataFrame:
    """The results of the sweep folder ``out``: its database, else (older folders, fixtures) its export."""
    out = Path(out)
    if db_path(out).is_file():
        return read_db(db_path(out))
    for name in ("results.parquet", "results.csv"):
        if (out / name).is_file():
            return read_export(out / name)
    raise UserError(f"{out}: no sweep results ({DB_NAME}, results.parquet or results.csv)")


def is_sweep_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return any((p / n).is_file() for n in (DB_NAME, "results.parquet", "results.csv"))


def export_results(out: str | os.PathLike, dest: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Write ``DEST/results.parquet`` and ``DEST/results.csv`` (default DEST = ``out``) from the
    database, atomically; return their paths."""
    df = read_db(db_path(out))
    dest = Path(dest) if dest is not None else Path(out)
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    pq, csv = dest / "results.parquet", dest / "results.csv"
    atomic_write_bytes(pq, buf.getvalue())
    atomic_write_text(csv, df.to_csv(index=False, lineterminator="\n"))
    return pq, csv
