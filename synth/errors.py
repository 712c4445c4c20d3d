"""User-facing errors: one line that names the file, row and field."""

from __future__ import annotations


class SynthError(Exception):
    """An error the user can act on; the CLI prints it as one line and exits non-zero."""

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None, field: str | None = None):
        self.message, self.file, self.row, self.field = message, file, row, field
        where = ", ".join(
            part
            for part in (
                f"{file}" if file else "",
                f"row {row}" if row is not None else "",
                f"field '{field}'" if field else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class ConfigError(SynthError):
    """The run config is invalid."""


class InputError(SynthError):
    """An input file is unreadable or malformed."""


class OutputError(SynthError):
    """The output directory cannot be written, is locked, or belongs to another config."""


class EngineError(SynthError):
    """The LLM engine could not be created or an endpoint stayed down."""
