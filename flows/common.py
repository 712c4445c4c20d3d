"""The flow body every recipe shares: plan batches, run one task per batch, finalise, report.

A task is a batch (hundreds of rows), never a row: Prefect's per-task overhead (~20 ms) would dominate.
The manifest, not Prefect's cache, decides what is done, so a rerun of a finished run generates nothing.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import httpx
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from synth.config import RunConfigBase
from synth.errors import EngineError
from synth.pipeline import Batch, BatchReport, RecipeRun, RunSummary, process_batch
from synth.report import summary_markdown

RETRYABLE = (EngineError, httpx.TransportError, ConnectionError, TimeoutError)


def _retry_on_engine_errors(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only engine and network failures; a bug or bad input fails at once."""
    try:
        state.result()
    except RETRYABLE:
        return True
    except Exception:
        return False
    return False


@task(
    name="generate-batch",
    task_run_name="{config.recipe}-batch-{batch.index:05d}",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_on_engine_errors,
)
def generate_batch(config: RunConfigBase, out: str, batch: Batch) -> BatchReport:
    """Run the recipe on one batch and write its Parquet parts (the manifest is updated by the flow)."""
    return process_batch(config, out, batch)


@task(name="finalize-shards", cache_policy=NO_CACHE)
def finalize_shards(run: RecipeRun) -> RunSummary:
    """Build the HF-layout shards and the dataset card from every recorded batch."""
    return run.finalize()


def run_recipe_flow(config: RunConfigBase, out: str | None = None) -> dict[str, Any]:
    """The body of every recipe flow; returns the run summary as a dict."""
    logger = get_run_logger()
    out_dir = str(Path(out or config.output.dir).resolve())
    with RecipeRun(config, out_dir) as run:
        pending = list(run.pending_batches())
        logger.info(
            "%s: %d batches, %d to generate, output %s", config.recipe, run.batches_total, len(pending), out_dir
        )
        progress = create_progress_artifact(progress=0.0, description=f"{config.recipe}: batches generated")
        retries = config.runner.retries
        runner_task = generate_batch.with_options(retries=retries)
        if config.runner.task_runner == "thread":
            # One engine per process and batches are already large: run them one after another.
            for done, batch in enumerate(pending, start=1):
                run.record(runner_task(config, out_dir, batch))
                update_progress_artifact(progress, 100.0 * done / max(len(pending), 1))
        else:
            with _configured_task_runner(config) as task_runner:
                futures = [
                    task_runner.submit(runner_task, {"config": config, "out": out_dir, "batch": batch})
                    for batch in pending
                ]
                for done, future in enumerate(futures, start=1):
                    run.record(future.result())
                    update_progress_artifact(progress, 100.0 * done / max(len(futures), 1))
        summary = finalize_shards(run)
    create_markdown_artifact(
        key=f"{config.recipe}-run-summary",
        markdown=summary_markdown(summary),
        description=f"polysynth {config.recipe} run summary",
    )
    logger.info("%s: kept %s, rejected %s", config.recipe, summary.kept, summary.rejected)
    return summary.as_dict()


def _configured_task_runner(config: RunConfigBase) -> AbstractContextManager[Any]:
    """The flow's task runner if it is the kind the config asks for, else a new one of that kind.

    Deployments and `prefect serve` load the flow from its entrypoint, without the task runner that
    run_flow applies with with_options: the batches would silently run on the default thread pool.
    """
    active = FlowRunContext.get().task_runner
    wanted = task_runner_for(config)
    return nullcontext(active) if type(active) is type(wanted) else wanted


def task_runner_for(config: RunConfigBase):
    """The Prefect task runner the run config asks for (Dask/Ray imported only when used)."""
    kind, address = config.runner.task_runner, config.runner.address
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=address) if address else DaskTaskRunner(
            cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True}
        )
    if kind == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError:
            raise EngineError("runner.task_runner 'ray' needs prefect-ray: pip install prefect-ray") from None
        return RayTaskRunner(address=address) if address else RayTaskRunner()
    return None
