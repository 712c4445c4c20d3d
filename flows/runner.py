"""Run a recipe's flow once, with the task runner its config asks for (what ``synth run`` calls)."""

from __future__ import annotations

from typing import Any

from flows.common import task_runner_for
from synth.config import RunConfigBase


def flow_for(recipe: str):
    """The Prefect flow of a recipe."""
    if recipe == "sap":
        from flows.sap import sap_flow as chosen
    elif recipe == "entitycs":
        from flows.entitycs import entitycs_flow as chosen
    else:
        from flows.cod import cod_flow as chosen
    return chosen


def run_flow(config: RunConfigBase, out: str | None = None) -> dict[str, Any]:
    """Run the recipe's flow in this process and return its summary."""
    chosen = flow_for(config.recipe)
    runner = task_runner_for(config)
    if runner is not None:
        chosen = chosen.with_options(task_runner=runner)
    return chosen(config=config, out=out)
