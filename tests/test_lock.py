"""The output-directory lock (synth.store.lock): flock-based, no stale state, one winner in a race, and the
O_EXCL fallback for file systems without flock."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synth.errors import OutputError
from synth.store import lock as lock_module
from synth.store.lock import OutputLock

ROOT = Path(__file__).resolve().parent.parent

REPO = Path(__file__).resolve().parents[1]
HOLDER = (
    "import sys, time; from pathlib import Path; from synth.store.lock import OutputLock; "
    "OutputLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(60)"
)
RACER = (
    "import sys, time; from pathlib import Path; from synth.errors import OutputError; "
    "from synth.store.lock import OutputLock; out, go = Path(sys.argv[1]), Path(sys.argv[2]); "
    "lock = OutputLock(out); print('ready', flush=True)\n"
    "while not go.exists(): time.sleep(0.001)\n"
    "try:\n    lock.acquire(); print('won', flush=True)\n"
    "except OutputError as exc:\n    print(exc, flush=True)\n"
    "time.sleep(2)"
)


def _python(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, cwd=REPO, env=env
    )


@pytest.fixture
def holder(tmp_path):
    """A live process holding the lock on tmp_path."""
    proc = _python(HOLDER, str(tmp_path))
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def _record(**fields) -> dict:
    base = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "boot_id": lock_module._boot_id(),
        "start_time": lock_module._proc_start_ticks("self"),
        "start_clock": "boot_ticks",
        "acquired_at": "2026-01-01T00:00:00Z",
        "command": "synth run old",
        "token": "previous-run",
    }
    return {**base, **fields}


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- 1. a holder killed with SIGKILL leaves nothing to clean up -------------------------------------------------


def test_second_run_is_refused_naming_holder_pid_and_host(tmp_path, holder):
    with pytest.raises(OutputError) as caught:
        OutputLock(tmp_path).acquire()
    message = str(caught.value)
    assert f"pid {holder.pid} on host {socket.gethostname()}, since " in message and "\n" not in message


def test_acquire_succeeds_immediately_after_holder_is_killed(tmp_path):
    proc = _python(HOLDER, str(tmp_path))
    assert proc.stdout.readline().strip() == "locked"
    proc.kill()  # SIGKILL: no cleanup runs, the record stays in .lock
    proc.wait()
    proc.stdout.close()
    started = time.monotonic()
    with OutputLock(tmp_path):
        elapsed = time.monotonic() - started
        record = json.loads((tmp_path / ".lock").read_text())
    assert (record["pid"], elapsed < 0.5) == (os.getpid(), True)


# -- 2. a record naming our own pid (a previous container's pid 1) does not block ---------------------------------


def test_record_with_our_pid_and_no_flock_does_not_block(tmp_path):
    (tmp_path / ".lock").write_text(json.dumps(_record()))
    lock = OutputLock(tmp_path)
    lock.acquire()
    try:
        assert json.loads((tmp_path / ".lock").read_text())["token"] != "previous-run"
    finally:
        lock.release()


def test_check_ignores_record_with_our_pid_and_no_flock(tmp_path):
    (tmp_path / ".lock").write_text(json.dumps(_record()))
    assert OutputLock(tmp_path).check() is None


# -- 3. a race has exactly one winner, and every loser names it ----------------------------------------------------


def test_race_has_one_winner_and_losers_name_it(tmp_path):
    out, go = tmp_path / "out", tmp_path / "go"
    racers = [_python(RACER, str(out), str(go)) for _ in range(8)]
    try:
        assert [proc.stdout.readline().strip() for proc in racers] == ["ready"] * 8
        go.touch()
        lines = {proc.pid: proc.communicate(timeout=30)[0].strip() for proc in racers}
    finally:
        for proc in racers:
            proc.kill()
            proc.wait()
    winners = [pid for pid, line in lines.items() if line == "won"]
    named = [f"another run (pid {winners[0]} on host" in line for pid, line in lines.items() if line != "won"] \
        if len(winners) == 1 else []
    assert (len(winners), named) == (1, [True] * 7), lines


# -- 4. two objects in one process conflict; one object may acquire twice ----------------------------------------


def test_second_lock_object_in_same_process_is_refused(tmp_path):
    with OutputLock(tmp_path):
        with pytest.raises(OutputError, match=f"pid {os.getpid()} on host"):
            OutputLock(tmp_path).acquire()


def test_acquire_twice_on_one_object_is_a_no_op(tmp_path):
    lock = OutputLock(tmp_path)
    lock.acquire()
    lock.acquire()
    lock.release()
    with OutputLock(tmp_path):  # released once is released
        pass


def test_separate_opens_in_one_process_conflict_under_flock(tmp_path):
    first = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    second = os.open(tmp_path / "f", os.O_RDWR)
    try:
        fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BlockingIOError):
            fcntl.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(first)
        os.close(second)


# -- 5. check() and release() ---------------------------------------------------------------------------------


def test_check_raises_while_another_process_holds(tmp_path, holder):
    with pytest.raises(OutputError, match=f"pid {holder.pid} on host"):
        OutputLock(tmp_path).check()


def test_check_does_nothing_when_free(tmp_path):
    with OutputLock(tmp_path):
        pass
    assert OutputLock(tmp_path).check() is None


def test_check_creates_nothing_when_output_is_missing(tmp_path):
    OutputLock(tmp_path / "out").check()
    assert not (tmp_path / "out").exists()


def test_check_by_the_holder_does_nothing(tmp_path):
    with OutputLock(tmp_path) as lock:
        assert lock.check() is None


def test_release_lets_another_acquire(tmp_path):
    first = OutputLock(tmp_path)
    first.acquire()
    first.release()
    second = OutputLock(tmp_path)
    second.acquire()
    second.release()
    assert (tmp_path / ".lock").read_bytes() == b""


def test_release_keeps_the_lock_file(tmp_path):
    with OutputLock(tmp_path) as lock:
        pass
    assert lock.path.exists()


def test_file_in_the_way_is_an_output_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="a file is in the way"):
        OutputLock(tmp_path / "file" / "out").acquire()


# -- 6. the fallback where flock is not supported ------------------------------------------------------------------


@pytest.fixture
def no_flock(monkeypatch):
    def flock(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", flock)


def test_fallback_acquire_and_release(tmp_path, no_flock):
    with OutputLock(tmp_path):
        held = json.loads((tmp_path / ".lock.held").read_text())["pid"]
    assert (held, (tmp_path / ".lock.held").exists()) == (os.getpid(), False)


def test_fallback_second_object_is_refused(tmp_path, no_flock):
    with OutputLock(tmp_path):
        with pytest.raises(OutputError, match=f"pid {os.getpid()} on host"):
            OutputLock(tmp_path).acquire()


def test_fallback_check_raises_while_held(tmp_path, no_flock):
    with OutputLock(tmp_path):
        with pytest.raises(OutputError, match=f"pid {os.getpid()} on host"):
            OutputLock(tmp_path).check()


def test_fallback_takes_over_record_of_dead_pid_on_this_host(tmp_path, no_flock):
    (tmp_path / ".lock.held").write_text(json.dumps(_record(pid=_dead_pid())))
    with OutputLock(tmp_path):
        assert json.loads((tmp_path / ".lock.held").read_text())["pid"] == os.getpid()


def test_fallback_takes_over_record_of_our_pid_from_a_previous_process(tmp_path, no_flock):
    (tmp_path / ".lock.held").write_text(json.dumps(_record()))  # pid 1 of an earlier container
    with OutputLock(tmp_path):
        assert json.loads((tmp_path / ".lock.held").read_text())["token"] != "previous-run"


def test_fallback_takes_over_record_from_before_this_boot(tmp_path, no_flock):
    (tmp_path / ".lock.held").write_text(json.dumps(_record(pid=1, boot_id="an-earlier-boot")))
    with OutputLock(tmp_path):
        assert json.loads((tmp_path / ".lock.held").read_text())["pid"] == os.getpid()


def test_fallback_keeps_record_of_a_live_process(tmp_path, no_flock, holder):
    # The holder locked with flock; its record copied into the fallback file names a live process.
    (tmp_path / ".lock.held").write_text((tmp_path / ".lock").read_text())
    with pytest.raises(OutputError, match=f"pid {holder.pid} on host"):
        OutputLock(tmp_path).acquire()


def test_fallback_keeps_record_from_another_host(tmp_path, no_flock):
    (tmp_path / ".lock.held").write_text(json.dumps(_record(host="elsewhere", pid=_dead_pid())))
    with pytest.raises(OutputError, match="on host elsewhere"):
        OutputLock(tmp_path).acquire()


def test_a_killed_run_as_pid_1_in_a_container_does_not_strand_the_next_one(tmp_path):
    """Real PID namespaces (``unshare --pid``, as a container runs synth as pid 1): a run holding the lock is
    killed with SIGKILL, and the next run — pid 1 again, the same pid the lock record names — takes the lock
    without anyone touching the file."""
    import shutil

    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed for this test")
    hold = (
        "import sys, time, json; from pathlib import Path; from synth.store.lock import OutputLock; "
        "import os; lock = OutputLock(Path(sys.argv[1])); lock.acquire(); print(os.getpid(), flush=True); time.sleep(60)"
    )
    # --kill-child: SIGKILL to unshare reaches the namespace's pid 1 too, as stopping a container does
    argv = ["unshare", "--pid", "--fork", "--kill-child=SIGKILL", "--mount-proc", sys.executable, "-c", hold, str(tmp_path)]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert first.stdout.readline().strip() == "1"
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == 1
        first.kill()
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    take = (
        "import sys, os; from pathlib import Path; from synth.store.lock import OutputLock; "
        "OutputLock(Path(sys.argv[1])).acquire(); print('took', os.getpid())"
    )
    second = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", take, str(tmp_path)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.strip() == "took 1"
