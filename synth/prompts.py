"""Prompt templates live in ``prompts/`` as versioned YAML files; code only fills them in.

A template file has a ``version``, an optional ``exemplar`` template (rendered once per few-shot example)
and a ``request`` template (the part that varies per request). Keeping the rendered few-shot prefix
byte-identical across requests is what lets vLLM's prefix cache reuse it.

Example::

    template = load_template("sap/summary.v1.yaml")
    prefix = template.render_prefix([{"passage": "...", "summary": "..."}])
    prompt = prefix + template.render_request(passage="...")
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import yaml

from synth.errors import ConfigError
from synth.paths import PROMPTS_DIR


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    request: str
    exemplar: str = ""
    header: str = ""
    separator: str = "\n\n"

    @property
    def tag(self) -> str:
        """``<name>@<version>``, recorded on every row as part of its prompt version."""
        return f"{self.name}@{self.version}"

    def render_prefix(self, exemplars: Iterable[dict[str, Any]] = (), **fields: Any) -> str:
        """Header plus every exemplar, each followed by the separator."""
        parts = [self.header.format(**fields)] if self.header else []
        parts += [self.exemplar.format(**fields, **example) for example in exemplars]
        return "".join(part + self.separator for part in parts)

    def render_request(self, **fields: Any) -> str:
        return self.request.format(**fields)


@lru_cache(maxsize=64)
def load_template(relative: str, root: Path = PROMPTS_DIR) -> PromptTemplate:
    """Load ``prompts/<relative>``; its name is the path without the ``.yaml`` suffix."""
    path = root / relative
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError:
        raise ConfigError("prompt template not found", file=str(path)) from None
    try:
        return PromptTemplate(name=relative.removesuffix(".yaml"), **data)
    except TypeError as exc:
        raise ConfigError(f"bad prompt template ({exc})", file=str(path)) from None
