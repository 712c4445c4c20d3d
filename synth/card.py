"""The output directory's ``README.md``: YAML ``configs:`` so ``load_dataset(OUT, "<recipe>-<lang>")`` works."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from synth.shards import REJECTED, Manifest, atomic_write_bytes


def dataset_configs(manifest: Manifest, *, include_rejected: bool = True) -> list[dict[str, Any]]:
    """One config per ``<recipe>-<lang>`` (and ``<recipe>-rejected``) found in the manifest's shards."""
    configs = []
    for recipe, state in sorted(manifest.recipes.items()):
        groups = sorted({shard["group"] for shard in state.get("shards", [])})
        for group in groups:
            if group == REJECTED and not include_rejected:
                continue
            name = f"{recipe}-rejected" if group == REJECTED else f"{recipe}-{group}"
            configs.append(
                {"config_name": name, "data_files": [{"split": "train", "path": f"{recipe}/{group}/train-*.parquet"}]}
            )
    return configs


def write_output_readme(out: Path, manifest: Manifest) -> Path:
    """Write ``OUT/README.md`` from the manifest (atomically)."""
    front = yaml.safe_dump({"configs": dataset_configs(manifest)}, sort_keys=False, allow_unicode=True)
    lines = ["---", front.rstrip(), "---", "", "# polysynth output", ""]
    for recipe, state in sorted(manifest.recipes.items()):
        totals = state.get("totals", {})
        lines.append(f"- **{recipe}** ({state['status']}): kept {totals.get('kept', {})}, rejected {totals.get('rejected', {})}")
    path = out / "README.md"
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
    return path
