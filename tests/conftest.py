"""Shared test settings: offline hub, Prefect hygiene, and the `slow` marker."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_unconfigure(config):
    """Point Prefect's console log handlers at the real stderr before the interpreter exits.

    Prefect stops its temporary server at exit and logs that through the stream its console handler got when
    logging was set up: pytest's capture file, closed by then ("Logging error ... I/O operation on closed file").
    """
    import logging
    import sys

    loggers = [logging.getLogger()] + [
        logger for logger in logging.root.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setStream(sys.__stderr__)
                if hasattr(handler, "console"):  # Prefect's handler writes through a rich Console of its own
                    handler.console.file = sys.__stderr__
