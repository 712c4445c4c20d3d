"""Stored generations: every successful model answer, keyed by what produced it (see ``synth.store.units``).

:class:`CachingEngine` wraps any engine. Before calling the model it looks each request up among the
generations of earlier runs in the same output; only the misses reach the model, and their successful results
are written next to the batch's segment. A failed request is never stored, so a rerun asks again.

::

    OUT/.polysynth/<recipe>/generations/<sid>.parquet   key (uint64), text, finish_reason, token counts,
                                                        texts, finish_reasons (every candidate of the request)

A request for ``n`` candidates (``Sampling.n``) is one generation holding all ``n`` texts; ``text`` is the first.
``texts`` is null for a one-text request, as in files written before ``texts`` existed: both read as ``[text]``.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa

from synth.llm.base import Engine, Request, Result
from synth.store.location import Location
from synth.store.segments import STORE_DIR
from synth.store.units import generation_key

GENERATION_SCHEMA = pa.schema(
    [
        pa.field("key", pa.uint64()),
        pa.field("text", pa.string()),
        pa.field("finish_reason", pa.string()),
        pa.field("prompt_tokens", pa.int64()),
        pa.field("completion_tokens", pa.int64()),
        pa.field("texts", pa.list_(pa.string())),
        pa.field("finish_reasons", pa.list_(pa.string())),
    ]
)


def generations_folder(recipe: str) -> str:
    return f"{STORE_DIR}/{recipe}/generations"


class CachingEngine:
    """An :class:`~synth.llm.base.Engine` that answers from stored generations first.

    Bind it to an output with :meth:`bind` (once per run: the index of stored generations is read then, lazily),
    call :meth:`flush` after each batch to store what the model generated.
    """

    def __init__(self, start_engine: Callable[[], Engine]):
        # Started on the first miss: a run answered wholly from stored generations never loads the model.
        self._start_engine = start_engine
        self._engine: Engine | None = None
        self.location: Location | None = None
        self.folder = ""
        self._run_id: str | None = None
        self._index: tuple[np.ndarray, np.ndarray, np.ndarray, list[str]] | None = None
        self._tables: OrderedDict[str, pa.Table] = OrderedDict()
        self._new: list[tuple[int, Result]] = []
        self._model: str | None = None
        self.last_error: str | None = None  # the latest failed request's error (endpoint, status, cause)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._start_engine()
        return self._engine

    @property
    def model_name(self) -> str:
        return self._model or self.engine.model_name

    def bind(self, out: Location | Path | str, recipe: str, run_id: str, model: str) -> None:
        """Use the generations stored in ``out`` for ``recipe``, keyed by ``model`` (the one the run resolved);
        a new ``run_id`` re-reads the index."""
        self._model = model
        if run_id != self._run_id:
            self.location, self.folder, self._run_id = Location(out), generations_folder(recipe), run_id
            self._index, self._new = None, []
            self._tables.clear()

    def _load_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        names = self.location.listdir(self.folder) if self.location is not None else []
        files = [f"{self.folder}/{n}" for n in names if n.endswith(".parquet") and not n.startswith(".")]
        keys, file_ix, row_ix = [], [], []
        readable = []
        for path in files:
            try:
                column = self.location.read_table(path, columns=["key"]).column(0)
            except (OSError, pa.ArrowInvalid):  # cut short by a power loss: a cache file, simply not used
                continue
            number = len(readable)
            readable.append(path)
            column = column.to_numpy(zero_copy_only=False).astype(np.uint64)
            keys.append(column)
            file_ix.append(np.full(len(column), number, dtype=np.int32))
            row_ix.append(np.arange(len(column), dtype=np.int64))
        if not keys:
            return np.empty(0, np.uint64), np.empty(0, np.int32), np.empty(0, np.int64), []
        all_keys = np.concatenate(keys)
        order = np.argsort(all_keys, kind="stable")
        return all_keys[order], np.concatenate(file_ix)[order], np.concatenate(row_ix)[order], readable

    def _table(self, path: str) -> pa.Table:
        table = self._tables.get(path)
        if table is None:
            table = self._tables[path] = self.location.read_table(path)
            if len(self._tables) > 8:
                self._tables.popitem(last=False)
        return table

    def _lookup(self, request: Request, key: int) -> Result | None:
        if self._index is None:
            self._index = self._load_index()
        keys, file_ix, row_ix, files = self._index
        if not len(keys):
            return None
        at = int(np.searchsorted(keys, np.uint64(key)))
        if at == len(keys) or keys[at] != np.uint64(key):
            return None
        row = self._table(files[file_ix[at]]).slice(int(row_ix[at]), 1).to_pylist()[0]
        texts = row.get("texts") or [row["text"]]  # a file of one text per request (before n) has no texts
        reasons = row.get("finish_reasons") or [row["finish_reason"]] * len(texts)
        if len(texts) != request.sampling.n:  # only a key collision could do this: ask the model instead
            return None
        return Result(
            request_id=request.id,
            texts=texts,
            finish_reasons=reasons,
            prompt_tokens=row["prompt_tokens"],
            completion_tokens=row["completion_tokens"],
            cached=True,
        )

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        """Results in request order: stored ones first looked up, the rest generated (and kept for :meth:`flush`)."""
        keys = [generation_key(self.model_name, request) for request in requests]
        # A request for log-probabilities (``Sampling.logprobs``: the answerability judge, one token) is neither
        # looked up nor stored: stored generations hold texts, not log-probabilities, so a stored answer could not
        # give them back; asking the model again costs one token, and a new column would change the file format.
        results: list[Result | None] = [
            None if r.sampling.logprobs is not None else self._lookup(r, k) for r, k in zip(requests, keys)
        ]
        missing = [i for i, result in enumerate(results) if result is None]
        if missing:
            fresh = self.engine.generate([requests[i] for i in missing])
            for i, result in zip(missing, fresh):
                results[i] = result
                if result.ok and requests[i].sampling.logprobs is None:
                    self._new.append((keys[i], result))
                else:
                    self.last_error = result.error
        return results  # type: ignore[return-value]

    def flush(self, segment_id: str) -> int:
        """Store the generations made since the last flush under ``segment_id``; returns how many."""
        new, self._new = self._new, []
        if not new or self.location is None:
            return 0
        table = pa.table(
            {
                "key": pa.array([k for k, _ in new], pa.uint64()),
                "text": [r.text for _, r in new],
                "finish_reason": [r.finish_reason for _, r in new],
                "prompt_tokens": [r.prompt_tokens for _, r in new],
                "completion_tokens": [r.completion_tokens for _, r in new],
                # null for one text (``text`` says it all), so single-candidate files stay as small as before
                "texts": [r.texts if len(r.texts) > 1 else None for _, r in new],
                "finish_reasons": [r.finish_reasons if len(r.texts) > 1 else None for _, r in new],
            },
            schema=GENERATION_SCHEMA,
        )
        self.location.write_table(f"{self.folder}/{segment_id}.parquet", table, durable=False)
        return len(new)

    def discard(self) -> None:
        """Forget generations not flushed (a batch that failed before its commit)."""
        self._new = []

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()

    def __getattr__(self, name: str):
        # Anything else (prefix_cache_stats, start_s, …) is the wrapped engine's.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.engine, name)
