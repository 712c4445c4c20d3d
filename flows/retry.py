"""Which failures a Prefect task retries: one predicate factory for every task of the flows.

Example::

    @task(retries=2, retry_condition_fn=retry_on(EngineError, httpx.TransportError))
    def generate_batch(...): ...

    @task(retries=2, retry_condition_fn=retry_on(HubError, when=lambda error: error.transient))
    def push_task(...): ...
"""

from __future__ import annotations

from typing import Any, Callable


def retry_on(
    *exception_types: type[BaseException], when: Callable[[Any], bool] | None = None
) -> Callable[[Any, Any, Any], bool]:
    """A ``retry_condition_fn`` for ``@task``: retry when the run failed with one of ``exception_types`` (and, given
    ``when``, ``when(error)`` is true); anything else (a bug, bad input, a rejected token) fails at once."""

    def retry_condition(task: Any, task_run: Any, state: Any) -> bool:
        try:
            state.result()
        except exception_types as error:
            return when is None or bool(when(error))
        except Exception:
            return False
        return False

    names = ", ".join(kind.__name__ for kind in exception_types)
    retry_condition.__name__ = retry_condition.__qualname__ = f"retry_on({names})"
    return retry_condition
