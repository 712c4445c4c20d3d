"""A real S3-compatible server on 127.0.0.1 for the object-storage tests: moto's server mode in a subprocess.

s3fs tests itself against the same server. The server keeps buckets in memory for its lifetime.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.llm_fixtures import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "polysynth-test",
    "AWS_SECRET_ACCESS_KEY": "polysynth-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def s3_server() -> Iterator[dict[str, str]]:
    """Start the server; yields the environment a client needs (``AWS_ENDPOINT_URL`` and credentials)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, "the S3 test server exited"
                assert time.monotonic() < deadline, "the S3 test server did not start"
                time.sleep(0.2)
        yield {"AWS_ENDPOINT_URL": endpoint, **CREDENTIALS}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def make_bucket(env: dict[str, str], name: str) -> None:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import s3fs

        s3fs.S3FileSystem(skip_instance_cache=True).mkdir(name)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
