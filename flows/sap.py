"""SAP summarize-then-ask (SWIM-IR): a summary per passage, then a query per target language."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.common import run_recipe_flow
from synth.config import SapConfig


@flow(name="polysynth-sap", log_prints=False, validate_parameters=True)
def sap_flow(
    config: SapConfig,
    out: str | None = None,
) -> dict[str, Any]:
    """SAP summarize-then-ask (SWIM-IR): a summary per passage, then a query per target language.

    Streams the input in batches (one task each), writes Parquet shards and a manifest, and
    attaches a run-summary artifact. Rerunning with the same config generates nothing twice.

    Args:
        config: The run config (see data/configs/sap.yaml): input, languages, engine, sampling, LID, output.
        out: Output directory; defaults to config.output.dir.
    """
    return run_recipe_flow(config, out)
