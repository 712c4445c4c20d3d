"""``flows.retry.retry_on``: which task failures Prefect retries (no Prefect run needed: a state is anything with
``result()``)."""

from __future__ import annotations

from flows.retry import retry_on
from synth.errors import EngineError, InputError
from synth.publish.hub import HubError


class _State:
    def __init__(self, error: BaseException | None = None):
        self.error = error

    def result(self) -> str:
        if self.error is not None:
            raise self.error
        return "done"


def test_retries_the_listed_exception_types_only():
    retry = retry_on(EngineError, ConnectionError)
    assert retry(None, None, _State(EngineError("endpoint down")))
    assert retry(None, None, _State(ConnectionResetError()))  # a subclass of a listed type
    assert not retry(None, None, _State(InputError("bad row")))
    assert not retry(None, None, _State(KeyError("bug")))
    assert not retry(None, None, _State())


def test_when_narrows_a_listed_type_by_the_error_itself():
    retry = retry_on(HubError, when=lambda error: error.transient)
    assert retry(None, None, _State(HubError("Hub request failed (503)", transient=True)))
    assert not retry(None, None, _State(HubError("the token was rejected (401)")))
    assert not retry(None, None, _State(EngineError("not a Hub error")))
