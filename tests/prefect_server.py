"""A real Prefect server and worker for the deployment tests (fixtures; import them into a test module).

One server per test session: ``prefect server start`` takes 15-35 s to answer on 2 cores, so every test
that needs an API shares it. It runs with its own ``PREFECT_HOME`` (a fresh SQLite database, no profile
of the user's leaks in), analytics off and no UI, and is always stopped, with its whole process group.

Usage in a test module::

    from tests.prefect_server import prefect_api, prefect_server, start_worker  # noqa: F401  (fixtures)

    @pytest.mark.slow
    def test_something(prefect_api):          # PREFECT_API_URL points at the server for this test
        with start_worker(prefect_api, "pool"):
            ...
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest

HEALTH_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class PrefectServer:
    """A running server: its API URL, its ``PREFECT_HOME`` and where its processes log."""

    url: str
    home: Path
    logs: Path

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a Prefect client process (CLI, worker) talking to this server."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API_")}
        env.update(
            PREFECT_API_URL=self.url,
            PREFECT_HOME=str(self.home),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            # The CLI would otherwise ask for confirmation or wrap lines at 80 columns.
            PREFECT_CLI_PROMPT="false",
            COLUMNS="200",
        )
        env.update(extra)
        return env


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the process group (the server and worker spawn children), SIGKILL what is left."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)
    except ProcessLookupError:
        pass


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def _prefect_cli() -> list[str]:
    """The ``prefect`` CLI of this interpreter's environment (the venv need not be on PATH)."""
    return [sys.executable, "-m", "prefect"]


@contextmanager
def run_server(root: Path) -> Iterator[PrefectServer]:
    """Start ``prefect server start`` on a free port under ``root``; yield it once /api/health answers."""
    home, logs = root / "home", root / "logs"
    home.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = PrefectServer(url=f"http://127.0.0.1:{port}/api", home=home, logs=logs)
    env = server.env(
        # The scheduler service runs every 60 s by default; the cron test should not wait that long.
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
        PREFECT_UI_ENABLED="false",
    )
    # The server must not try to reach itself as a client while starting.
    env.pop("PREFECT_API_URL")
    log_path = logs / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*_prefect_cli(), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui", "--analytics-off"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"prefect server exited with {process.returncode}:\n{_tail(log_path)}")
            try:
                if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server not healthy after {HEALTH_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")
            time.sleep(1)
        yield server
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """One real Prefect server for the whole test session."""
    with run_server(tmp_path_factory.mktemp("prefect-server")) as server:
        yield server


@pytest.fixture
def prefect_api(prefect_server: PrefectServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrefectServer]:
    """Point this test (its Prefect settings and any subprocess it starts) at the session's server.

    Prefect reads its settings once per process, so the environment alone is not enough for the test
    process itself: the settings are overridden too, and both are restored after the test.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    for key, value in prefect_server.env().items():
        if key.startswith("PREFECT_") or key == "COLUMNS":
            monkeypatch.setenv(key, value)
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.url, PREFECT_HOME: prefect_server.home}):
        yield prefect_server


def create_pool(server: PrefectServer, pool: str) -> None:
    """``prefect work-pool create POOL --type process`` against ``server`` (idempotent)."""
    subprocess.run(
        [*_prefect_cli(), "work-pool", "create", pool, "--type", "process", "--overwrite"],
        env=server.env(),
        check=True,
        capture_output=True,
        timeout=120,
    )


@contextmanager
def background(server: PrefectServer, name: str, argv: list[str], **env: str) -> Iterator[subprocess.Popen]:
    """Run ``argv`` against ``server`` for the duration of the block, logging to ``LOGS/<name>.log``;
    then kill its process group (flow-run subprocesses included)."""
    log_path = server.logs / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, env=server.env(**env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        _stop(process)


@contextmanager
def start_worker(server: PrefectServer, pool: str) -> Iterator[subprocess.Popen]:
    """Run ``prefect worker start --pool POOL`` for the duration of the block (log: :func:`worker_log`).

    The worker polls every 2 s instead of 10 s, which is most of a test run's wall time otherwise.
    """
    argv = [*_prefect_cli(), "worker", "start", "--pool", pool, "--type", "process"]
    with background(server, f"worker-{pool}", argv, PREFECT_WORKER_QUERY_SECONDS="2") as process:
        yield process


def background_log(server: PrefectServer, name: str) -> str:
    """The tail of the log of a :func:`background` process (for assertion messages)."""
    return _tail(server.logs / f"{name}.log")


def worker_log(server: PrefectServer, pool: str) -> str:
    """The tail of a worker's log (for assertion messages)."""
    return background_log(server, f"worker-{pool}")


def server_log(server: PrefectServer) -> str:
    """The server's whole log (its services log their failures there, not to the client)."""
    return (server.logs / "server.log").read_text(errors="replace")
