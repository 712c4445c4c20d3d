"""``OUT/manifest.json``: the human-readable summary of what the output publishes, written at finalize.

Per recipe: the row fingerprint and config of the run that last finalized it, its status, the shard
generation it publishes (files, rows, sha256) and totals. It is not the ledger (that is
``synth.store.segments``): it is rewritten once per run, never per batch, and together with ``README.md`` it is
the commit point of a finalize.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from synth.errors import OutputError
from synth.store.files import atomic_write_bytes

MANIFEST = "manifest.json"
FORMAT = 2


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Manifest:
    """Load, change and atomically save ``OUT/manifest.json``."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = self.out / MANIFEST
        self.data: dict[str, Any] = {"format": FORMAT, "recipes": {}}
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise OutputError(f"manifest is unreadable ({exc})", file=str(self.path)) from None
            if self.data.get("format") != FORMAT:
                raise OutputError(
                    f"written by an older polysynth (manifest format {self.data.get('format')}, this one {FORMAT}); "
                    "use another --out",
                    file=str(self.path),
                )

    @property
    def recipes(self) -> dict[str, Any]:
        return self.data["recipes"]

    def save(self) -> None:
        atomic_write_bytes(self.path, json.dumps(self.data, indent=1, sort_keys=True).encode("utf-8"))

    def set_status(self, recipe: str, status: str, **fields: Any) -> None:
        self.recipes.setdefault(recipe, {"shards": []}).update(status=status, **fields)
        self.save()
