"""The output-directory lock: one run writes an output directory at a time.

Mechanism: ``OUT/.lock`` is opened (created if missing, never deleted) and locked with
``flock(LOCK_EX | LOCK_NB)``; the lock is held for as long as that file descriptor stays open.

Why flock and not a pid file:

* The kernel drops the lock when the holder dies, however it dies (``kill -9``, OOM, a container whose
  pid 1 is synth being killed). There is never a stale lock to detect or take over, so no check-then-delete
  race where two runs both "take over" the same stale lock: taking the lock is one atomic system call.
* A pid file is judged by asking whether its pid is alive, which is wrong in containers: synth runs as pid 1
  in every container, so a killed run's pid file names a pid that is "alive" (ours) and blocks every later
  run. With flock the file's contents are never consulted to decide who holds the lock.
* flock locks belong to an open file description, so two ``OutputLock`` objects in one process (two
  ``os.open`` calls) conflict just like two processes do.

While held, the file carries a JSON holder record, used only for the error a second run prints: ``host``
(``socket.gethostname()``), ``pid``, ``boot_id`` (``/proc/sys/kernel/random/boot_id``, null if
unreadable), ``start_time`` with ``start_clock`` (the process start from ``/proc/self/stat`` field 22 in
clock ticks since boot, ``"boot_ticks"``; else ``time.time()`` at acquire, ``"epoch"``), ``acquired_at``
(ISO UTC), ``command`` (``sys.argv`` joined, at most 200 characters) and ``token`` (random, per
acquisition). Release empties the record, then unlocks.

File systems without flock (``ENOLCK``/``EOPNOTSUPP``, e.g. some NFS mounts) fall back to creating
``OUT/.lock.held`` with ``O_CREAT | O_EXCL``, holding the same record. A record written on this host whose
pid is dead (or is a different process under the same pid), or written before the current boot, is stale:
it is replaced by renaming a freshly written record over it, and the run that reads its own token back
after a short settle wins. That fallback is best effort (a run stalled for the settle time between its
last re-read and its rename could still win alongside another); flock is the real mechanism.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from synth.errors import OutputError

LOCK_FILE = ".lock"
HELD_FILE = ".lock.held"  # the fallback's lock, where flock is not supported
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}
_HOLDER_WAIT_S = 1.0  # how long a refused run waits for the holder's record (written right after its flock)
_SETTLE_S = 0.05  # the fallback's wait between renaming its record over a stale one and reading it back
_EMPTY_STALE_S = 10.0  # an unreadable fallback record this old is from a run killed while writing it
_HELD_TOKENS: set[str] = set()  # tokens of the locks this process holds (tells our pid's records apart)


def _raise_output_error(exc: OSError, path: Path, *, creating_dir: bool = False) -> None:
    if creating_dir and exc.errno in (errno.ENOTDIR, errno.EEXIST):
        raise OutputError("cannot create the output directory: a file is in the way", file=str(path)) from None
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        raise OutputError("disk full (or file size limit reached) while writing", file=str(path)) from None
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        raise OutputError("output is not writable", file=str(path)) from None
    raise OutputError(f"cannot write: {exc.strerror}", file=str(path)) from None


class _FlockUnsupported(Exception):
    pass


class OutputLock:
    """An exclusive lock on an output directory; a second run gets a one-line error naming the holder.

    A holder that died (however it died) holds nothing: the operating system released its lock.
    """

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = self.out / LOCK_FILE
        self.held_path = self.out / HELD_FILE
        self._fd: int | None = None  # the flock'd descriptor while held
        self._token: str | None = None  # set while held (either way)

    # -- public API ---------------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the lock or raise OutputError naming the holder. A no-op if this object holds it already."""
        if self._token is not None:
            return
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a regular file in the way (ENOTDIR/EEXIST), read-only, ...
            _raise_output_error(exc, self.out, creating_dir=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            _raise_output_error(exc, self.path)
        try:
            record = self._wait_for_lock(fd, fcntl.LOCK_EX)
        except _FlockUnsupported:
            os.close(fd)
            self._acquire_held_file()
            return
        except BaseException:
            os.close(fd)
            raise
        if record is not None:  # refused
            os.close(fd)
            raise self._busy(record)
        token = uuid.uuid4().hex
        try:
            data = _encode(_holder_record(token))
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)  # closing drops the flock
            _raise_output_error(exc, self.path)
        self._fd, self._token = fd, token
        _HELD_TOKENS.add(token)

    def check(self) -> None:
        """Raise the error ``acquire`` would raise while another run holds the lock; takes nothing.

        A no-op when this object holds the lock, or when the output directory or its lock file does not exist.
        """
        if self._token is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # no lock file: nobody ever locked here (unwritable output is check_writable's business)
            return
        try:
            # A shared probe: it conflicts with a holder's exclusive lock only (and an acquirer that meets the
            # probe retries, see _wait_for_lock).
            record = self._wait_for_lock(fd, fcntl.LOCK_SH)
            if record is None:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except _FlockUnsupported:
            record = self._live_held_record()
        finally:
            os.close(fd)
        if record is not None:
            raise self._busy(record)

    def release(self) -> None:
        """Give the lock up (the lock file stays: deleting a flock'd file would let two runs lock two files)."""
        if self._token is None:
            return
        token, fd = self._token, self._fd
        self._token, self._fd = None, None
        _HELD_TOKENS.discard(token)
        if fd is not None:
            try:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        else:
            record, _ = _read_json(self.held_path)
            if record is not None and record.get("token") == token:
                with contextlib.suppress(FileNotFoundError):
                    self.held_path.unlink()

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- flock ----------------------------------------------------------------------------------------------

    def _wait_for_lock(self, fd: int, mode: int) -> dict[str, Any] | None:
        """Lock ``fd`` (``mode``, non-blocking): None once locked, else the holder's record ({} if unknown).

        A refusal is final once the holder's record names a live process. Until then the lock is tried again
        for up to a second: the holder may be a winner that has not written its record yet, or another run's
        momentary ``check()`` probe.
        """
        deadline = time.monotonic() + _HOLDER_WAIT_S
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return None
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno in _UNSUPPORTED:
                    raise _FlockUnsupported from None
                _raise_output_error(exc, self.path)
            record = _parse(_pread_all(fd))
            if record is not None and _holder_alive(record):
                return record
            if time.monotonic() >= deadline:
                return record or {}
            time.sleep(0.02)

    def _busy(self, record: dict[str, Any]) -> OutputError:
        parts = []
        if record.get("pid") is not None:
            parts.append(f"pid {record['pid']}")
        if record.get("host"):
            parts.append(f"on host {record['host']}")
        who = " ".join(parts) or "holder unknown"
        if record.get("acquired_at"):
            who += f", since {record['acquired_at']}"
        return OutputError(
            f"another run ({who}) is writing this output directory; wait for it or use another --out",
            file=str(self.out),
        )

    # -- fallback without flock -----------------------------------------------------------------------------

    def _acquire_held_file(self) -> None:
        token = uuid.uuid4().hex
        data = _encode(_holder_record(token))
        for _ in range(5):
            try:
                fd = os.open(self.held_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                record, raw = self._read_held()
                if not _held_file_stale(record, self.held_path):
                    raise self._busy(record or {}) from None
                if self._take_over(raw, data, token):
                    break
                continue
            except OSError as exc:
                _raise_output_error(exc, self.held_path)
            try:
                os.write(fd, data)
                os.fsync(fd)
            except OSError as exc:
                os.close(fd)
                with contextlib.suppress(OSError):
                    self.held_path.unlink()
                _raise_output_error(exc, self.held_path)
            os.close(fd)
            break
        else:
            raise OutputError("could not take the output lock", file=str(self.out))
        self._token = token
        _HELD_TOKENS.add(token)

    def _take_over(self, stale_raw: bytes | None, data: bytes, token: str) -> bool:
        """Rename a fresh record over the stale one; True if it is still ours after a short settle."""
        tmp = self.out / f"{HELD_FILE}.{token}.tmp"
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if _read_raw(self.held_path) != stale_raw:  # someone else got there first
                return False
            os.rename(tmp, self.held_path)
        except OSError as exc:
            _raise_output_error(exc, self.held_path)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        time.sleep(_SETTLE_S)
        record, _ = _read_json(self.held_path)
        return record is not None and record.get("token") == token

    def _read_held(self) -> tuple[dict[str, Any] | None, bytes | None]:
        """The fallback record; an existing but unreadable one is read again for a moment (being written)."""
        deadline = time.monotonic() + _HOLDER_WAIT_S
        record, raw = _read_json(self.held_path)
        while record is None and raw is not None and time.monotonic() < deadline:
            time.sleep(0.02)
            record, raw = _read_json(self.held_path)
        return record, raw

    def _live_held_record(self) -> dict[str, Any] | None:
        record, raw = self._read_held()
        if raw is None:
            return None
        return None if _held_file_stale(record, self.held_path) else (record or {})


# -- holder records -----------------------------------------------------------------------------------------


def _holder_record(token: str) -> dict[str, Any]:
    start = _proc_start_ticks("self")
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "boot_id": _boot_id(),
        "start_time": start if start is not None else time.time(),
        "start_clock": "boot_ticks" if start is not None else "epoch",
        "acquired_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join(sys.argv)[:200],
        "token": token,
    }


def _encode(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, sort_keys=True) + "\n").encode()


def _parse(raw: bytes | None) -> dict[str, Any] | None:
    if not raw or not raw.strip():
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if isinstance(record, int):  # the pid-only lock file of older versions
        return {"pid": record}
    return record if isinstance(record, dict) else None


def _pread_all(fd: int) -> bytes:
    with contextlib.suppress(OSError):
        return os.pread(fd, 1 << 16, 0)
    return b""


def _read_raw(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _read_json(path: Path) -> tuple[dict[str, Any] | None, bytes | None]:
    raw = _read_raw(path)
    return _parse(raw), raw


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int | str) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (after the parenthesised command name), or None."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _proc_start_ticks(pid: int | str) -> int | None:
    fields = _proc_stat(pid)
    try:
        return int(fields[22 - 3]) if fields else None
    except (IndexError, ValueError):
        return None


def _holder_alive(record: dict[str, Any]) -> bool:
    """Whether the record's writer may still be running: False only when it is known to be gone."""
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if record.get("host") not in (None, socket.gethostname()):
        return True  # another machine's process: cannot tell
    boot = _boot_id()
    if record.get("boot_id") and boot and record["boot_id"] != boot:
        return False  # written before this machine last booted
    if pid == os.getpid():
        # Ours only if this process wrote it (a container's previous pid 1 wrote the same pid).
        return record.get("token") in _HELD_TOKENS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return True
    fields = _proc_stat(pid)
    if fields is None:
        return True
    if fields[0] == "Z":  # killed, not yet reaped: not a live writer
        return False
    if record.get("start_clock") == "boot_ticks" and record.get("start_time") is not None:
        return _proc_start_ticks(pid) == record["start_time"]  # a different process under a reused pid
    return True


def _held_file_stale(record: dict[str, Any] | None, path: Path) -> bool:
    """The fallback's rule: stale if written on this host by a process that is gone (or before this boot)."""
    if record is None:  # unreadable or empty: a run killed between creating and writing it, once old enough
        try:
            return time.time() - path.stat().st_mtime > _EMPTY_STALE_S
        except FileNotFoundError:
            return True
        except OSError:
            return False
    if record.get("host") != socket.gethostname():
        return False
    return not _holder_alive(record)


class ObjectStoreLock:
    """The lock of an output on an object store (``s3://…``), where there is no flock and no atomic create.

    ``OUT/.lock`` holds the same holder record as :class:`OutputLock`. A record whose writer is known to be gone
    (this host, pid dead or reused, or an earlier boot) is taken over; any other record refuses the run with the
    holder named. Best effort, and said so: two runs starting within the same second on two machines can both
    pass the check, and a run killed on another machine leaves a record only a person can judge (the error says
    which object to delete).
    """

    def __init__(self, location: Any):
        self.location = location
        self.out = location.url
        self._token: str | None = None

    def _record(self) -> dict[str, Any] | None:
        try:
            return _parse(self.location.read_bytes(LOCK_FILE))
        except (FileNotFoundError, OSError):
            return None

    def check(self) -> None:
        if self._token is not None:
            return
        record = self._record()
        if record is not None and _holder_alive(record):
            raise OutputError(
                f"another run (pid {record.get('pid')} on host {record.get('host')}, since {record.get('acquired_at')}) "
                f"holds this output; wait for it, or if that run is gone delete {self.location.display(LOCK_FILE)}",
                file=self.out,
            )

    def acquire(self) -> None:
        if self._token is not None:
            return
        self.check()
        token = uuid.uuid4().hex
        self.location.write_bytes(LOCK_FILE, _encode(_holder_record(token)))
        time.sleep(_SETTLE_S)
        if (self._record() or {}).get("token") != token:
            self.check()  # another run wrote after us: it holds the lock
            raise OutputError("could not take the output lock (another run raced for it)", file=self.out)
        self._token = token
        _HELD_TOKENS.add(token)

    def release(self) -> None:
        if self._token is None:
            return
        if (self._record() or {}).get("token") == self._token:
            self.location.delete(LOCK_FILE)
        _HELD_TOKENS.discard(self._token)
        self._token = None

    def __enter__(self) -> "ObjectStoreLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_for(location: Any) -> "OutputLock | ObjectStoreLock":
    """The lock that fits the output: flock on a local or mounted file system, a holder record on object stores."""
    return OutputLock(Path(location.path())) if location.local else ObjectStoreLock(location)
