"""Outline-based dialogue (COD): SGD dialogues rewritten in target languages from language-neutral outlines."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import run_recipe_flow
from synth.config import CodConfig


@flow(name="polysynth-cod", log_prints=False, validate_parameters=True)
def cod_flow(
    config: CodConfig,
    out: str | None = None,
) -> dict[str, Any]:
    """Outline-based dialogue (COD): SGD dialogues rewritten in target languages from language-neutral outlines.

    Streams the input in batches (one task each), writes Parquet shards and a manifest, and
    attaches a run-summary artifact. Rerunning with the same config generates nothing twice.

    Args:
        config: The run config (see data/configs/cod.yaml): input, languages, engine, sampling, LID, output.
        out: Output directory; defaults to config.output.dir.
    """
    return run_recipe_flow(config, out)
