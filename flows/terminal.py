"""What a person sees while ``synth run`` or ``synth demo`` works: progress on the terminal, library logs in a file.

* :class:`ProgressDisplay` draws ``synth.report.progress`` as a live bar per recipe (units, kept/rejected, model
  answers, output tokens/s, ETA) on a terminal, and prints one line per batch when stdout is a pipe or a file.
* :func:`send_logs_to_file` moves Prefect's, vLLM's, torch's and the HTTP clients' log records (and Python
  warnings) off the terminal into ``OUT/logs/<time>.log``; ``--verbose`` keeps them on the terminal as well.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from synth.report import progress

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_file_handler: logging.FileHandler | None = None


def log_path_for(out: str) -> Path:
    """``OUT/logs/<UTC time>-<pid>.log`` for a local output; object-store outputs log under the temp folder."""
    import tempfile

    folder = Path(out) / "logs" if "://" not in out else Path(tempfile.gettempdir()) / "polysynth-logs"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return folder / f"{stamp}-{os.getpid()}.log"


def send_logs_to_file(path: Path, verbose: bool = False) -> Path:
    """Send every library log record (INFO and up) and Python warning to ``path``; without ``verbose``, take the
    handlers that write to the terminal away, so a run shows only its progress and one-line errors.

    Call it before the run starts: vLLM reads ``VLLM_CONFIGURE_LOGGING`` when it is imported, and Prefect
    installs its console handlers when it is imported (done here, so that they can be taken away).
    """
    global _file_handler
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")  # vLLM's records then reach the root logger's handlers
    if not verbose:
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # torch's C++ warnings go straight to stderr
    import prefect.main  # noqa: F401 - configures Prefect's logging now (`import prefect` alone is lazy)

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _LogFile(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    loggers = [root] + [logger for logger in logging.root.manager.loggerDict.values() if isinstance(logger, logging.Logger)]
    for logger in loggers:
        if _file_handler is not None and _file_handler in logger.handlers:
            logger.removeHandler(_file_handler)  # a second run in this process logs to its own file
        terminal = [h for h in logger.handlers if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
        if terminal and not verbose:
            for h in terminal:
                logger.removeHandler(h)
        if terminal and logger is not root and not logger.propagate:
            logger.addHandler(handler)  # e.g. uvicorn and prefect._internal do not reach the root logger
    if _file_handler is not None:
        _file_handler.close()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    _file_handler = handler
    return path


class _LogFile(logging.FileHandler):
    """A log file that goes quiet when it cannot be written (full disk, file size limit): the run's own one-line
    error says what happened, and logging's default would print a traceback per record on the terminal."""

    def handleError(self, record: logging.LogRecord) -> None:
        self.setLevel(logging.CRITICAL + 1)


def current_log_file() -> Path | None:
    """The file :func:`send_logs_to_file` set up last, if any (named in one-line errors)."""
    return Path(_file_handler.baseFilename) if _file_handler is not None else None


class ProgressDisplay:
    """Shows the runs of this process while the ``with`` block runs.

    Example::

        with ProgressDisplay(Console()):
            run_flow(config)
    """

    def __init__(self, console: Console):
        self.console = console
        self.live = console.is_terminal
        self._bars = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[detail]}"),
            console=console,
            refresh_per_second=4,
        )
        self._tasks: dict[int, TaskID] = {}

    def __enter__(self) -> "ProgressDisplay":
        if self.live:
            self._bars.start()
        self._watch = progress.watching(self._on_event)
        self._watch.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._watch.__exit__(*exc)
        if self.live:
            self._bars.stop()

    def _on_event(self, state: progress.RunProgress, event: str) -> None:
        if not self.live:
            if event == "batch":
                self.console.print(state.line(), highlight=False, soft_wrap=True)
            return
        task = self._tasks.get(id(state))
        if task is None:
            task = self._tasks[id(state)] = self._bars.add_task(state.recipe, total=None, detail="")
        self._bars.update(
            task,
            total=max(state.units_pending, 1),
            completed=state.units_done if state.units_pending else 1,
            detail=state.line().split(": ", 1)[1],
        )
