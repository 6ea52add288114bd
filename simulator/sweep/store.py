"""The results of a sweep: an SQLite database (``OUT/results.sqlite``, WAL mode), one row per point.

Why a database and not a file rewritten now and then: finished points are committed in small
transactions (at most a quarter second of them, :mod:`simulator.sweep.execute`), so a kill loses
only that and the points in flight, never rows already written; two writers
cannot erase each other's rows (an upsert keyed by ``point_id`` never replaces an ``ok`` row); and
readers (``besa report``, a notebook, ``sqlite3 OUT/results.sqlite``) query while the sweep runs —
in WAL mode a reader never blocks the writer nor waits for it.

Table ``results``: ``point_id`` (primary key: the digest of everything that decides the point's
result, :mod:`simulator.sweep.identity`), the parameter columns (``preset``, ``mode``, ``workload``,
``tokens``, ``context``, ``batch``, ``seed``, ``hw_id`` = the resolved machine's digest,
``workload_id`` = the workload contents' digest, ``simulator_version``, and every swept hardware field), the result columns
(:data:`simulator.schema.SWEEP_TOTAL_FIELDS`), ``status`` (``ok`` / ``error``), ``error`` (one line, empty when ok),
``wall_s`` (seconds of simulation per point) and ``finished_at`` (Unix time).  Columns are added
as new swept fields appear; SQLite's dynamic typing keeps each value's own type.  Table ``meta``:
``format`` and ``version`` of this layout.  Table ``machines``: ``hw_id`` (primary key) and
``hardware`` (the resolved machine's fields as JSON): every row's full machine, stored once.

Version 1 databases keyed points by the preset's NAME (an edited preset file returned stale rows):
a writer refuses them with one line (readers still read them).

``results.parquet`` / ``results.csv`` are EXPORTS of the table (:func:`export_results`), written
atomically at the end of a sweep and by ``besa sweep --export DIR``.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from besa_common.errors import UserError
from besa_common.fileio import atomic_write_bytes, atomic_write_text, resolve_path
from simulator.schema import SWEEP_FIRST_COLUMNS

DB_NAME = "results.sqlite"
FORMAT, VERSION = "besa-sweep-results", "2"
# What to do with a folder of an older layout (version 1, or exports without digests).
STALE_HINT = "its points are keyed by preset NAME, not by contents, so its rows may be stale: sweep into a new --out, or move the folder away and rerun"
# SQLite header fields that mark the file as ours (``PRAGMA application_id`` = "BESA", ``user_version``):
# a database with another application id, or with tables of its own, is never adopted nor written.
APPLICATION_ID = 0x42455341
USER_VERSION = 1
DB_TIMEOUT_S = 60.0  # how long a writer waits for another process's lock (besa sweep --db-timeout)


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

    def __init__(self, out: str | os.PathLike, timeout: float = DB_TIMEOUT_S):
        self.out = Path(out)
        self.path = db_path(out)
        self.timeout = float(timeout)
        fresh = not self.path.exists()
        legacy = self._legacy_rows() if fresh else None  # checked before anything is created
        if not fresh:
            check_ours(self.path, self.timeout)  # read-only: a foreign file is refused untouched
        try:
            self.con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            self.con.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a committed transaction survives a killed process (only an OS
            # crash may lose the last ones), at a fraction of FULL's fsyncs.
            self.con.execute("PRAGMA synchronous=NORMAL")
            self.con.execute("BEGIN IMMEDIATE")
            self.con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self._check_format()
            self.con.execute("CREATE TABLE IF NOT EXISTS results (point_id TEXT PRIMARY KEY NOT NULL, status TEXT, error TEXT)")
            self.con.execute("CREATE TABLE IF NOT EXISTS machines (hw_id TEXT PRIMARY KEY NOT NULL, hardware TEXT)")
            self.con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self.con.execute(f"PRAGMA user_version = {USER_VERSION}")
            self.con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            raise db_error(self.path, exc, self.timeout) from None
        except UserError:
            self._close_quietly()
            raise
        self.columns = self._columns()
        if legacy:
            self.add(legacy)

    def _close_quietly(self) -> None:
        con = getattr(self, "con", None)
        if con is not None:
            con.close()

    def _check_format(self) -> None:
        meta = dict(self.con.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            self.con.executemany("INSERT INTO meta VALUES (?, ?)", [("format", FORMAT), ("version", VERSION)])
        elif meta.get("format") == FORMAT and meta.get("version") == "1":
            self.con.execute("ROLLBACK")
            raise UserError(f"{self.path}: written by an older besa sweep (results version 1); {STALE_HINT}")
        elif meta.get("format") != FORMAT or meta.get("version") != VERSION:
            self.con.execute("ROLLBACK")
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

    def _legacy_rows(self) -> list[dict[str, Any]] | None:
        """The rows of the exports of a folder without a database (its database removed, or a
        folder of the layout before it), to take over once; exports without digests are refused."""
        for name in ("results.parquet", "results.csv"):
            p = self.out / name
            if p.is_file():
                try:
                    df = read_export(p)
                except Exception as exc:
                    raise UserError(f"{p} is unreadable ({type(exc).__name__}); move it away to start the sweep afresh") from None
                if "point_id" in df.columns and "hw_id" not in df.columns:
                    raise UserError(f"{p}: exported by an older besa sweep; {STALE_HINT}")
                if "point_id" in df.columns:
                    return df.astype(object).where(df.notna(), None).to_dict("records")
                return None
        return None

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
        try:
            self.con.execute("BEGIN IMMEDIATE")
            have = set(self.columns)
            new = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in have]  # row order
            if new:
                self._ensure_columns(new)
            sql, cols = self._upsert_sql(), self.columns
            self.con.executemany(sql, [[_plain(r.get(c)) for c in cols] for r in rows])
            self.con.execute("COMMIT")
        except BaseException as exc:
            if self.con.in_transaction:
                self.con.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError):
                raise db_error(self.path, exc, self.timeout) from None
            raise

    def add_machines(self, machines: dict[str, dict[str, Any]]) -> None:
        """Record resolved machines (``hw_id`` -> fields) not yet in table ``machines``."""
        have = {r[0] for r in self.con.execute("SELECT hw_id FROM machines")}
        new = [(k, json.dumps(v, sort_keys=True)) for k, v in machines.items() if k not in have]
        if new:
            self.con.execute("BEGIN IMMEDIATE")
            self.con.executemany("INSERT OR IGNORE INTO machines VALUES (?, ?)", new)
            self.con.execute("COMMIT")

    def finished_ids(self) -> set[str]:
        return {r[0] for r in self.con.execute("SELECT point_id FROM results WHERE status = 'ok'")}

    def frame(self) -> pd.DataFrame:
        return _frame(self.con)

    def close(self) -> None:
        self.con.close()


def db_error(path: Path, exc: sqlite3.DatabaseError, timeout: float) -> UserError:
    """One line for an SQLite error on the results database: a lock held by another process past the
    timeout, a full disk, or a file that is not ours."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return UserError(
            f"{path} is locked by another process (waited {timeout:g} s); rows already committed are kept: "
            f"rerun when it is done, or wait longer with --db-timeout SECONDS"
        )
    if "disk is full" in text or "disk I/O" in text or "readonly" in text:
        return UserError(f"{path}: cannot write ({text}); rows already committed are kept")
    return UserError(f"{path}: not a sweep results database ({text}); choose another --out")


def check_ours(path: Path, timeout: float = DB_TIMEOUT_S) -> None:
    """Refuse (one line, nothing written) a file that is not a besa results database: not SQLite,
    another application's id, or SQLite tables of its own (someone's ``invoices``)."""
    try:
        con = sqlite3.connect(f"{resolve_path(path).as_uri()}?mode=ro", uri=True, timeout=timeout)
        try:
            app = con.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise db_error(path, exc, timeout) from None
    if app not in (0, APPLICATION_ID):
        raise UserError(f"{path}: an SQLite database of another application (application_id {app:#x}), not a sweep results database; choose another --out")
    foreign = sorted(tables - {"meta", "results"})
    if app == 0 and (foreign or (tables and "meta" not in tables)):
        what = ", ".join(foreign[:3]) or ", ".join(sorted(tables)[:3])
        raise UserError(f"{path}: an SQLite database with other tables ({what}), not a sweep results database; it is left untouched: choose another --out")


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
        con = sqlite3.connect(f"{resolve_path(path).as_uri()}?mode=ro", uri=True, timeout=30.0)
    except sqlite3.Error as exc:
        raise UserError(f"{path}: cannot open ({exc})") from None
    try:
        return _frame(con)
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{path}: not a sweep results database ({exc})") from None
    finally:
        con.close()


def read_machines(out: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The resolved machines of a sweep folder: ``hw_id`` -> hardware fields (empty for a version 1
    database, which has none)."""
    path = db_path(out)
    try:
        con = sqlite3.connect(f"{resolve_path(path).as_uri()}?mode=ro", uri=True, timeout=30.0)
    except sqlite3.Error as exc:
        raise UserError(f"{path}: cannot open ({exc})") from None
    try:
        return {k: json.loads(v) for k, v in con.execute("SELECT hw_id, hardware FROM machines")}
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()


def finished_ids(out: str | os.PathLike) -> set[str]:
    """The finished points of a sweep folder, read-only (``--dry-run``); empty when there is no
    database yet; a version 1 database is refused like the writer refuses it."""
    path = db_path(out)
    if not path.is_file():
        return set()
    try:
        con = sqlite3.connect(f"{resolve_path(path).as_uri()}?mode=ro", uri=True, timeout=30.0)
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("version") != VERSION:
            raise UserError(f"{path}: written by an older besa sweep (results version {meta.get('version')}); {STALE_HINT}")
        return {r[0] for r in con.execute("SELECT point_id FROM results WHERE status = 'ok'")}
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{path}: not a sweep results database ({exc})") from None


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
