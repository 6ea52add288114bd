"""Atomic file writes, per-directory writer locks and output-path checks.

* Atomic writes: every output goes to a temporary name in the same folder, then is renamed, so a
  reader sees either the old file or the complete new one, never a half-written one, even when the
  writer is killed midway.  Temporary names carry the writer's pid (``.NAME.pidPID.XXXX.tmp``) so
  that a later writer can tell a dead writer's leftovers from a live one's work in progress.
* :func:`dir_lock`: an advisory lock per output directory (``filelock``; ``flock`` on Linux).  A
  second writer on the same directory fails at once with ONE line naming the holder (pid, host,
  start time, command), or waits for it (``wait=True``, the CLI's ``--wait``).  Readers never take
  it, so they are never blocked.  Only the holder may clean temporary files (:meth:`DirLock.clean_temps`).
* :func:`check_output_path`: the one check every command runs on its output path BEFORE slow work.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from besa_common.errors import UserError


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[Any]:
    """A binary file handle whose contents replace ``path`` atomically when the block exits cleanly.

    For outputs too large to build in memory first (streamed tensor files); on an exception the
    temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 minus umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and not exc.filename:  # name the output in the one-line error
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + ``os.replace``)."""
    with atomic_writer(path) as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (keys sorted, so identical runs give identical bytes)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive advisory lock (``flock``) on ``path``: several processes may race for the same work."""
    import fcntl

    path = Path(path)
    make_dirs(path.parent)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    rc = fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.ENOTSUP):
        return False  # this filesystem cannot exchange: fall back to two renames
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(tmp: str | os.PathLike, out: str | os.PathLike) -> None:
    """Move the finished directory ``tmp`` to ``out``, replacing an existing ``out`` (its old copy is removed).

    On Linux the two directories are exchanged in one atomic step, so a reader sees the old
    directory or the new one, never a mix and never nothing.  Elsewhere it is two renames: a crash
    in between leaves the old copy under a hidden ``.NAME.pidPID.old.tmp`` sibling, never a
    half-written ``out``.
    """
    tmp, out = Path(tmp), Path(out)
    if out.exists():
        if _exchange(tmp, out):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old copy
            return
        old = out.with_name(f"{temp_prefix(out.name)}old.tmp")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def temp_dir_for(out: str | os.PathLike) -> Path:
    """A fresh hidden temporary sibling directory of ``out`` (pid-tagged, see :func:`temp_prefix`) with
    an ordinary directory's mode (``mkdtemp`` makes it owner-only); ``out``'s parent is created."""
    out = Path(out)
    make_dirs(out.parent)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out.name), suffix=".tmp", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    return tmp


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Build a directory atomically: yields a temporary sibling (:func:`temp_dir_for`) to fill; when the
    block ends normally it replaces ``out`` (:func:`replace_dir`), when it raises (or is interrupted)
    the temporary directory is removed and ``out`` is untouched.  The one temp-directory pattern of
    the project (exports, model conversions, saved models)."""
    tmp = temp_dir_for(out)
    try:
        yield tmp
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_dir_unit(out: str | os.PathLike, files: dict[str, bytes | str]) -> Path:
    """Write ``files`` (name -> content) as ONE unit: into a fresh temporary sibling directory, then
    swapped in for ``out`` (:func:`replace_dir`).  A reader, or a writer killed at any moment, never
    leaves a new file beside an old one.  ``out`` may hold only these names (plus hidden entries,
    which are carried over): see :func:`check_output_path` ``replaces=``.
    """
    out = Path(out)
    tmp = temp_dir_for(out)
    try:
        for name, content in files.items():
            _write_member(tmp / name, content.encode("utf-8") if isinstance(content, str) else content)
        if out.is_dir():
            for p in out.iterdir():  # keep hidden entries (e.g. a reader's notes) with the directory
                if p.name.startswith(".") and p.name not in files and not (tmp / p.name).exists():
                    os.link(p, tmp / p.name) if p.is_file() else shutil.copytree(p, tmp / p.name, symlinks=True)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        with dir_lock(out, wait=True, command="write_dir_unit"):  # two writers: one swap at a time
            replace_dir(tmp, out)
            _clean_dead_siblings(out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and not exc.filename:  # name the output in the one-line error
            raise OSError(exc.errno, exc.strerror, str(out)) from exc
        raise
    return out


def _clean_dead_siblings(out: Path) -> list[Path]:
    """Remove temporary siblings of ``out`` left by writers that were killed (caller holds the lock)."""
    prefix, removed = f".{out.name}.pid", []
    if not out.parent.is_dir():
        return removed
    for p in out.parent.iterdir():
        m = _TEMP_RE.match(p.name)
        if p.name.startswith(prefix) and m and not pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _write_member(path: Path, data: bytes) -> None:
    """One file of :func:`write_dir_unit` (a separate function so a test can stop a writer midway)."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


# ----------------------------------------------------------------------------- directories made, OS errors
_MADE_DIRS: list[Path] = []  # directories this process created (make_dirs), oldest first


def make_dirs(path: str | os.PathLike) -> Path:
    """``mkdir -p path``, remembering every directory it created, so that a command that fails
    afterwards leaves no empty directory behind (:func:`remove_made_dirs`, the CLI's error exit)."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    _MADE_DIRS.extend(reversed(missing))
    return path


def remove_made_dirs() -> list[Path]:
    """Remove the directories :func:`make_dirs` created in this process that are still empty (the
    newest first); returns what was removed.  Called on a
    failing command's way out: work another process put there since, or finished files, stay."""
    removed = []
    for d in reversed(_MADE_DIRS):
        with contextlib.suppress(OSError):
            d.rmdir()  # only succeeds when empty
            removed.append(d)
    _MADE_DIRS.clear()
    return removed


# errno -> what it means to a user who asked for a file to be written
_OS_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (file size limit reached)",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error",
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "symbolic link loop",
    errno.EMFILE: "too many open files",
}
# other libraries' wrappers of an OS error (safetensors' Rust IoError, SQLite, torch's stream writer)
_WRAPPED = [
    (re.compile(r"os error (\d+)"), None),
    (re.compile(r"No space left on device|StorageFull|database or disk is full|file write failed"), errno.ENOSPC),
    (re.compile(r"File too large|FileTooLarge"), errno.EFBIG),
    (re.compile(r"Read-only file system|ReadOnlyFilesystem|attempt to write a readonly database"), errno.EROFS),
]


_WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def _os_line(code: int, filename: Any) -> str:
    where = f" ({filename})" if filename else ""
    verb = "cannot write" if code in _WRITE_ERRORS else "cannot access"
    return f"{verb}{where}: {_OS_ERRORS[code]} [{errno.errorcode.get(code, code)}]; nothing half-written was left"


def os_error_line(exc: BaseException) -> str | None:
    """One line for an error of the environment (disk full, file-size limit, read-only file system,
    permission denied ...) found in ``exc`` or the exceptions it was raised from, else None (a bug:
    keep the traceback).  THE place that turns such OSErrors into a message (the CLI's boundary)."""
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _OS_ERRORS:
            return _os_line(e.errno, e.filename)
        text = str(e)
        for rx, code in _WRAPPED:
            m = rx.search(text)
            if m:
                code = code if code is not None else int(m.group(1))
                if code in _OS_ERRORS:
                    return _os_line(code, None)
        e = e.__cause__ or e.__context__
    return None


# ----------------------------------------------------------------------------- temp names
_TEMP_RE = re.compile(r"^\..+\.pid(\d+)\.[^/]*tmp$")


def temp_prefix(name: str) -> str:
    """Prefix of a temporary sibling of ``name`` written by this process: ``.NAME.pidPID.``."""
    return f".{name}.pid{os.getpid()}."


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a pid we may not signal still exists)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


# ----------------------------------------------------------------------------- directory locks
LOCK_SUFFIX = ".lock"
INFO_SUFFIX = ".lock.info"


def lock_paths(directory: str | os.PathLike) -> tuple[Path, Path]:
    """``(lock file, holder-info file)`` of ``directory``: hidden SIBLINGS ``.NAME.lock``/``.NAME.lock.info``.

    Siblings, not files inside, because some writers replace the whole directory by a rename
    (``besa export``, ``besa simulate``): a lock inside would be renamed away with the old copy.
    """
    d = Path(os.path.abspath(directory))
    if not d.name:  # the filesystem root has no sibling: its lock lives inside
        return d / f".besa{LOCK_SUFFIX}", d / f".besa{INFO_SUFFIX}"
    return d.with_name(f".{d.name}{LOCK_SUFFIX}"), d.with_name(f".{d.name}{INFO_SUFFIX}")


def _holder_text(info_path: Path) -> str:
    """One phrase naming the holder from its info file (written right after it took the lock)."""
    try:
        info = json.loads(info_path.read_text())
        pid, host, started = int(info["pid"]), str(info["host"]), str(info["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its pid is not recorded yet)"
    text = f"pid {pid} on {host} since {started}"
    if info.get("command"):
        text += f" ({str(info['command'])[:120]})"
    if host == socket.gethostname() and not pid_alive(pid):
        text += f"; pid {pid} no longer runs, so a process it started still holds the lock"
    return text


class DirLock:
    """A held directory lock (see :func:`dir_lock`)."""

    def __init__(self, directory: Path, lock_path: Path, info_path: Path):
        self.directory, self.lock_path, self.info_path = directory, lock_path, info_path

    def clean_temps(self, recursive: bool = True) -> list[Path]:
        """Remove temporary files/dirs (``.NAME.pidPID.*tmp``) under the directory whose writer is dead.

        Only a lock holder may do this: a live writer's temp file (any pid that still runs) is never
        touched, so an unlocked writer (``besa simulate`` into a run directory) keeps its work.
        Returns what was removed.
        """
        removed: list[Path] = _clean_dead_siblings(self.directory)  # a killed whole-directory writer's temp copy
        if not self.directory.is_dir():
            return removed
        walker = os.walk(self.directory) if recursive else [(str(self.directory), [], os.listdir(self.directory))]
        for root, dirs, files in walker:
            for name in list(dirs) + list(files):
                m = _TEMP_RE.match(name)
                if not m or pid_alive(int(m.group(1))):
                    continue
                p = Path(root) / name
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                    if name in dirs:
                        dirs.remove(name)
                else:
                    p.unlink(missing_ok=True)
                removed.append(p)
        return removed


@contextlib.contextmanager
def dir_lock(directory: str | os.PathLike, wait: bool = False, command: str | None = None) -> Iterator[DirLock]:
    """Hold the advisory writer lock of ``directory`` for the ``with`` block.

    A second writer fails at once with a :class:`UserError` naming the holder (pid, host, start
    time, command), or with ``wait=True`` blocks until the holder is done (one notice on stderr).
    Stale locks: the OS lock (``flock``) dies with its holder, so a killed writer never blocks the
    next one; its leftover info file is simply overwritten.  The directory's parent is created.
    """
    from filelock import FileLock, Timeout

    directory = Path(os.path.abspath(directory))
    lock_path, info_path = lock_paths(directory)
    try:
        make_dirs(directory.parent)
    except OSError as exc:
        raise UserError(f"cannot create {directory.parent}: {exc.strerror or exc}") from None
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(blocking=False)
    except Timeout:
        holder = _holder_text(info_path)
        if not wait:
            time.sleep(0.2)  # a holder that just took the lock writes its info file within ms
            raise UserError(f"{directory} is being written by {_holder_text(info_path)}; wait for it to finish or pass --wait") from None
        print(f"besa: {directory} is being written by {holder}; waiting for it (--wait)", file=sys.stderr, flush=True)
        lock.acquire()
    except OSError as exc:
        raise UserError(f"cannot lock {directory}: {exc.strerror or exc} ({lock_path})") from None
    try:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": command if command is not None else " ".join(["besa", *sys.argv[1:]]),
        }
        atomic_write_json(info_path, info)
        yield DirLock(directory, lock_path, info_path)
    finally:
        with contextlib.suppress(OSError):
            info_path.unlink()
        with contextlib.suppress(OSError):
            # Removed while still held, so no empty .NAME.lock stays behind.  Safe: filelock (>= 4.3)
            # retries when the inode it locked was unlinked meanwhile (a waiter locks a fresh file).
            lock_path.unlink()
        lock.release()


# ----------------------------------------------------------------------------- path resolution
def resolve_path(path: str | os.PathLike, flag: str | None = None) -> Path:
    """THE path resolution of the project: ``path`` absolute, symbolic links followed as far as they
    go (a missing tail stays as written).  Never raises ``RuntimeError`` on a symbolic-link loop
    (``Path.resolve()`` does): a loop in any component is a one-line :class:`UserError` naming
    ``flag`` (or the path).  Every comparison of paths goes through it."""
    check_no_loop(path, flag)
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def check_no_loop(path: str | os.PathLike, flag: str | None = None) -> None:
    """One-line :class:`UserError` when ``path`` (or a directory above it) is a symbolic-link loop."""
    try:
        os.stat(os.path.expanduser(os.fspath(path)))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            name = f"{flag} {path}" if flag else str(path)
            raise UserError(f"{name}: symbolic link loop (too many levels of symbolic links)") from None
    except ValueError:  # an embedded NUL byte
        raise UserError(f"{flag + ' ' if flag else ''}{path!r}: not a valid path") from None


# ----------------------------------------------------------------------------- output checks
def _within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_output_path(
    path: str | os.PathLike, *, flag: str = "--out", kind: str = "dir", inputs: Iterable[str | os.PathLike | None] = (), replaces: Iterable[str] | None = None
) -> Path:
    """Check an output path BEFORE any slow work; return it.  One-line :class:`UserError` when:

    * it exists but is of the wrong kind (``kind="dir"``: a file; ``kind="file"``: a directory);
    * a component above it is a file (``out.json/x``);
    * the directory that would receive it is not writable;
    * it is, or contains, one of ``inputs`` (writing it would destroy the input: ``besa export
      --masks RUN --out RUN --overwrite``).  Paths are compared after resolving symlinks;
    * ``replaces`` (the file names of a directory written as a unit, :func:`write_dir_unit`) is
      given and the existing directory holds anything else (it would be lost).
    """
    p = Path(path)
    if str(path) == "":
        raise UserError(f"{flag}: empty path")
    check_no_loop(p, flag)
    if kind == "dir" and p.exists() and not p.is_dir():
        raise UserError(f"{flag} {p} exists and is not a directory")
    if kind == "file" and p.is_dir():
        raise UserError(f"{flag} {p} is a directory, expected a file")
    if kind == "file" and (p.name in ("", ".", "..") or str(path).endswith(os.sep)):
        raise UserError(f"{flag} {path} names a directory, expected a file")
    probe = p if p.exists() else p.parent
    while not probe.exists():
        if probe.is_symlink():
            raise UserError(f"{flag} {p}: {probe} is a dangling symbolic link")
        probe = probe.parent
    if not probe.is_dir() and probe != p:
        raise UserError(f"{flag} {p}: {probe} is a file, not a directory")
    target = probe if probe.is_dir() else probe.parent
    if not os.access(target, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {p}: {target} is not writable")
    resolved = resolve_path(p, flag)
    for q in inputs:
        if q is None or str(q) == "":
            continue
        qr = resolve_path(q)
        if _within(qr, resolved):
            what = "is" if qr == resolved else "contains"
            raise UserError(f"{flag} {p} {what} the input {q}; writing it would destroy the input (choose another {flag})")
    if replaces is not None and p.is_dir():
        other = sorted(c.name for c in p.iterdir() if not c.name.startswith(".") and c.name not in set(replaces))
        if other:
            raise UserError(
                f"{flag} {p} holds other files ({', '.join(other[:3])}{' ...' if len(other) > 3 else ''}); "
                f"it is replaced as a whole: choose a new or empty directory"
            )
    return p
