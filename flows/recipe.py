"""The flow of every recipe: the library's driver loop (``synth.pipeline.drive``) with one Prefect task per batch,
at most a few batches in flight, a progress artifact, and a run-summary artifact.

:func:`recipe_flow` makes the flow ``polysynth-<recipe>`` of any registered recipe (its ``config`` parameter typed
with the recipe's config model, so Prefect validates it and shows its schema); ``flows.recipe.<recipe>_flow`` is
that flow as a module attribute, which is what deployment entrypoints name (``flows/recipe.py:sap_flow``).
:func:`run_flow` runs one in this process: what ``synth run``, ``synth demo`` and the publish flow call.

A task is a batch (hundreds of rows), never a row: Prefect's per-task overhead (~20 ms) would dominate.
The store's ledger, not Prefect's cache, decides what is done, so a rerun of a finished run generates nothing.
"""

from __future__ import annotations

import contextvars
import threading
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from typing import Any, Optional

import httpx
from prefect import Flow, flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from flows.retry import retry_on
from synth.config import RunConfigBase
from synth.errors import EngineError
from synth.pipeline import Batch, BatchReport, IncompleteRunError, RecipeRun, _Done, drive, process_batch
from synth.recipes import recipe_class, recipe_names
from synth.report import progress
from synth.report.html import summary_markdown
from synth.store.location import Location

# Batches submitted ahead of the one being recorded, per worker: enough to keep workers busy, few enough
# that the driver's memory does not grow with the input.
IN_FLIGHT_PER_WORKER = 2


@task(
    name="generate-batch",
    task_run_name="{config.recipe}-batch-{batch.index:05d}",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_jitter_factor=0.5,
    # Only engine and network failures are retried; a bug or bad input fails at once.
    retry_condition_fn=retry_on(EngineError, httpx.TransportError, ConnectionError, TimeoutError),
)
def generate_batch(config: RunConfigBase, out: str, batch: Batch) -> BatchReport:
    """Run the recipe on one batch and commit its finished units to the store's ledger."""
    return process_batch(config, out, batch)


def run_recipe_flow(config: RunConfigBase, out: str | None = None) -> dict[str, Any]:
    """The body of every recipe flow; returns the run summary as a dict."""
    logger = get_run_logger()
    out_dir = str(Location(out or config.output.dir))
    runner_task = generate_batch.with_options(retries=config.runner.retries)
    with RecipeRun(config, out_dir) as run:
        logger.info(
            "%s: %d units, %d to generate, output %s", config.recipe, run.units_total, run.units_pending, out_dir
        )
        artifact = ProgressArtifact(run.progress)
        try:
            if config.runner.task_runner == "thread":
                # One engine per process and batches are already large: run them one after another.
                summary = drive(run, lambda batch: _Done(runner_task(config, out_dir, batch)))
            else:
                with _configured_task_runner(config) as task_runner:
                    workers = _worker_count(task_runner)
                    summary = drive(
                        run,
                        lambda batch: task_runner.submit(runner_task, {"config": config, "out": out_dir, "batch": batch}),
                        max_in_flight=IN_FLIGHT_PER_WORKER * workers,
                    )
        except IncompleteRunError as error:
            _summary_artifact(config, error.summary)
            raise
        finally:
            artifact.close()
    _summary_artifact(config, summary)
    logger.info("%s: kept %s, rejected %s", config.recipe, summary.kept, summary.rejected)
    return summary.as_dict()


class ProgressArtifact:
    """The flow run's progress artifact, kept in step with ``synth.report.progress`` so the Prefect UI shows a deployed
    run moving, inside batches too.

    Updates are sent from a thread of its own, at most every ``interval_s``: model answers arrive on engine
    threads (the OpenAI engine's event loop among them), where Prefect's client must not be called.
    """

    def __init__(self, state: progress.RunProgress, interval_s: float = 2.0):
        self.state = state
        self.id = create_progress_artifact(
            progress=0.0, key=f"polysynth-{state.recipe}-progress", description=state.line()
        )
        self._changed = threading.Event()
        self._closed = threading.Event()
        self._interval_s = interval_s
        self._watch = progress.watching(self._on_event)
        self._watch.__enter__()
        context = contextvars.copy_context()  # the Prefect client settings of this flow run
        self._thread = threading.Thread(target=context.run, args=(self._send_updates,), daemon=True)
        self._thread.start()

    def _on_event(self, state: progress.RunProgress, event: str) -> None:
        if state is self.state:
            self._changed.set()

    def _send_updates(self) -> None:
        while not self._closed.is_set():
            if self._changed.wait(timeout=self._interval_s) and not self._closed.is_set():
                self._changed.clear()
                self._update()
                self._closed.wait(self._interval_s)

    def _update(self) -> None:
        update_progress_artifact(self.id, 100.0 * self.state.fraction, description=self.state.line())

    def close(self) -> None:
        """Stop the updates and send the final state."""
        self._watch.__exit__(None, None, None)
        self._closed.set()
        self._thread.join()
        self._update()


def _summary_artifact(config: RunConfigBase, summary: Any) -> None:
    create_markdown_artifact(
        key=f"{config.recipe}-run-summary",
        markdown=summary_markdown(summary),
        description=f"polysynth {config.recipe} run summary",
    )


def _worker_count(task_runner: Any) -> int:
    """Workers of a Dask or Ray task runner (2 when it cannot tell: a cluster that is still starting)."""
    client = getattr(task_runner, "_client", None)
    try:
        return max(1, len(client.scheduler_info()["workers"]))
    except Exception:
        return 2


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


def flow_attribute(recipe: str) -> str:
    """The module attribute naming ``recipe``'s flow: ``sap`` -> ``sap_flow``."""
    return recipe.replace("-", "_") + "_flow"


@lru_cache(maxsize=None)
def recipe_flow(recipe: str) -> Flow:
    """The Prefect flow ``polysynth-<recipe>`` of a registered recipe (one object per recipe and process)."""
    recipe_cls = recipe_class(recipe)

    def run(config: RunConfigBase, out: Optional[str] = None) -> dict[str, Any]:
        return run_recipe_flow(config, out)

    run.__name__ = run.__qualname__ = flow_attribute(recipe)
    # Prefect reads the parameter schema and validates ``config`` from these annotations.
    run.__annotations__ = {"config": recipe_cls.config_model, "out": Optional[str], "return": dict[str, Any]}
    summary = (recipe_cls.__doc__ or recipe).strip().splitlines()[0]
    run.__doc__ = f"""{summary}

    Streams the input in batches (one task each), writes Parquet shards and a manifest, and attaches a run-summary
    artifact. Rerunning with the same config generates nothing twice.

    Args:
        config: The run config (see data/configs/{recipe}.yaml): input, languages, engine, sampling, LID, output.
        out: Output directory; defaults to config.output.dir.
    """
    return flow(run, name=f"polysynth-{recipe}", log_prints=False, validate_parameters=True)


def __getattr__(attribute: str) -> Flow:
    # ``flows.recipe.sap_flow`` for deployment entrypoints (prefect.yaml, ``synth serve``): made on first access.
    # Always by the installed module, also when Prefect loaded this file by its path: the batch task must pickle
    # by a module name that Dask and Ray workers can import.
    import importlib

    home = importlib.import_module("flows.recipe")
    for recipe in recipe_names():
        if flow_attribute(recipe) == attribute:
            return home.recipe_flow(recipe)
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")


def run_flow(config: RunConfigBase, out: str | None = None) -> dict[str, Any]:
    """Run the recipe's flow in this process, with the task runner its config asks for, and return its summary."""
    chosen = recipe_flow(config.recipe)
    runner = task_runner_for(config)
    if runner is not None:
        chosen = chosen.with_options(task_runner=runner)
    return chosen(config=config, out=out)
