"""What identifies work: a unit is one source record under one *row fingerprint*; a generation is one request.

Everything that can change a row's text is in its identity, and nothing else:

* **row fingerprint** — the recipe, the model actually served, every setting that changes generation or
  filtering (sampling, languages, recipe options, LID thresholds, engine dtype) and the content of every file
  the recipe renders prompts or labels from (templates, exemplars, lexicon, schema). Left out: input location
  and ``limit``, batch size, runner, servers, concurrency, timeouts, output location and shard sizes.
* **unit key** — hash of the fingerprint and the record's content. A unit is done once the ledger holds it,
  whatever batch, limit, input order or run made it.
* **generation key** — hash of the model, the rendered prompt (or chat messages), the sampling parameters and
  the request seed. A stored generation is reused by any unit that sends the same request, so adding a
  language reuses every summary, a changed LID threshold re-filters without one model call, and an edited
  template regenerates exactly the requests it renders.

Keys are the first 8 bytes of a SHA-256, as ``uint64``: compact enough that the driver holds a million of them
in 8 MB (collision odds at 10⁹ units: ~3·10⁻²).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from synth.config import RunConfigBase
from synth.llm.base import Request

# Engine settings that decide which model computes what; the rest (servers, concurrency, parallelism,
# timeouts, retries, cache settings) changes how fast, not what.
_ENGINE_IDENTITY = ("dtype",)


def _digest64(payload: bytes) -> int:
    return int.from_bytes(hashlib.sha256(payload).digest()[:8], "little")


def key_hex(key: int) -> str:
    return f"{key:016x}"


def _files_digest(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted({Path(p).resolve() for p in paths}):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(file.name.encode() + b"\x1f")
            with file.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def row_fingerprint(config: RunConfigBase, model: str, resources: Iterable[Path]) -> str:
    """The 16-hex fingerprint shared by every unit of a run (see the module docstring)."""
    settings = config.model_dump(
        mode="json",
        # dedup acts when rows are published, not on what a unit's rows are: it is part of the shard generation
        exclude={"input": True, "runner": True, "engine": True, "output": True, "dedup": True},
    )
    settings["engine"] = {"model": model, **{k: getattr(config.engine, k) for k in _ENGINE_IDENTITY}}
    settings["resources"] = _files_digest(resources)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def unit_key(fingerprint: str, record: dict[str, Any]) -> int:
    """The key of one source record under ``fingerprint``."""
    body = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)
    return _digest64(f"{fingerprint}\x1f{body}".encode())


def source_key(source_id: str) -> int:
    """A compact hash of a source id (the driver's duplicate-id check keeps only these)."""
    return _digest64(source_id.encode())


def generation_key(model: str, request: Request) -> int:
    """The key of one request's generation: model, prompt or messages, sampling (seed included), schema."""
    body = {
        "model": model,
        "prompt": request.prompt,
        "messages": list(request.messages) if request.messages is not None else None,
        "sampling": request.sampling.as_dict(),
        "json_schema": request.json_schema,
    }
    return _digest64(json.dumps(body, sort_keys=True, ensure_ascii=False).encode())


def first_of_runs(sorted_keys: np.ndarray) -> np.ndarray:
    """Boolean mask of the first element of each run of equal values in a sorted array (1 byte a key)."""
    mask = np.empty(len(sorted_keys), dtype=bool)
    if len(mask):
        mask[0] = True
        np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=mask[1:])
    return mask


class KeySet:
    """A sorted, de-duplicated ``uint64`` array with vectorised membership (8 bytes per key)."""

    def __init__(self, keys: np.ndarray | None = None, *, owned: bool = False):
        """``owned``: ``keys`` may be sorted in place (the caller gives it up), saving a copy of 8 bytes a key."""
        if keys is None or not len(keys):
            self.keys = np.empty(0, np.uint64)
            return
        keys = keys if owned and keys.dtype == np.uint64 else keys.astype(np.uint64)
        keys.sort()  # sort-based: numpy's hash-based unique peaks at several times the array's size
        self.keys = keys[first_of_runs(keys)]

    def __len__(self) -> int:
        return len(self.keys)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``keys`` are in the set."""
        keys = np.asarray(keys, dtype=np.uint64)
        if not len(self.keys):
            return np.zeros(len(keys), dtype=bool)
        index = np.searchsorted(self.keys, keys)
        index[index == len(self.keys)] = 0
        return self.keys[index] == keys

    def positions(self, keys: np.ndarray) -> np.ndarray:
        """Index of each key in the sorted set (only meaningful where :meth:`contains` is true)."""
        return np.searchsorted(self.keys, np.asarray(keys, dtype=np.uint64))


class KeyBuffer:
    """An append-only ``uint64`` buffer that grows by doubling (the driver's streaming accumulator)."""

    def __init__(self, capacity: int = 1024):
        self._data = np.empty(capacity, dtype=np.uint64)
        self._size = 0

    def append(self, key: int) -> None:
        if self._size == len(self._data):
            self._data = np.resize(self._data, 2 * len(self._data))
        self._data[self._size] = key
        self._size += 1

    def __len__(self) -> int:
        return self._size

    def array(self) -> np.ndarray:
        return self._data[: self._size]
