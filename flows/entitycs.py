"""Entity code-switching (EntityCS): Wikidata-linked entity mentions replaced by their labels in other languages."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import run_recipe_flow
from synth.config import EntityCSConfig


@flow(name="polysynth-entitycs", log_prints=False, validate_parameters=True)
def entitycs_flow(
    config: EntityCSConfig,
    out: str | None = None,
) -> dict[str, Any]:
    """Entity code-switching (EntityCS): Wikidata-linked entity mentions replaced by their labels in other languages.

    Streams the input in batches (one task each), writes Parquet shards and a manifest, and
    attaches a run-summary artifact. Rerunning with the same config generates nothing twice.

    Args:
        config: The run config (see data/configs/entitycs.yaml): input, languages, engine, sampling, LID, output.
        out: Output directory; defaults to config.output.dir.
    """
    return run_recipe_flow(config, out)
