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
from synth.store.location import Location

MANIFEST = "manifest.json"
FORMAT = 2


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Manifest:
    """Load, change and atomically save ``OUT/manifest.json``."""

    def __init__(self, out: Location | Path | str):
        self.location = Location(out)
        self.out = Path(self.location.path()) if self.location.local else self.location
        self.path = self.location.display(MANIFEST)
        self.data: dict[str, Any] = {"format": FORMAT, "recipes": {}}
        if self.location.exists(MANIFEST):
            try:
                self.data = json.loads(self.location.read_bytes(MANIFEST).decode("utf-8"))
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
        self.location.write_bytes(MANIFEST, json.dumps(self.data, indent=1, sort_keys=True).encode("utf-8"))

    def set_status(self, recipe: str, status: str, **fields: Any) -> None:
        self.recipes.setdefault(recipe, {"shards": []}).update(status=status, **fields)
        self.save()
