"""Prefect flows: they only wire ``synth`` library calls into tasks.

Importing this package sets offline-friendly Prefect defaults unless the user set them already:
analytics off, a longer ephemeral-server start-up timeout (20 s is too tight on 2 cores), and
``PREFECT_HOME`` under ``~/.prefect`` (override with the environment variable).
"""

import os

PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_LOGGING_LOG_PRINTS": "false",
}
for _key, _value in PREFECT_DEFAULTS.items():
    os.environ.setdefault(_key, _value)
