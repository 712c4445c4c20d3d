"""Prompt templates live in ``prompts/`` as versioned YAML files; code only fills them in.

Each prompt exists in two forms (``engine.prompt_format``, resolved by :mod:`synth.llm.prompt_format`), one file
per form: ``sap/summary.v1.yaml`` (completion) and ``sap/summary.chat.v1.yaml`` (chat); :func:`template_path`
maps one name to the other.

* **completion** (base models): a ``header``, an ``exemplar`` template rendered once per few-shot example, each
  followed by the ``separator``, then the ``request`` template: one text the model continues.
* **chat** (``form: chat``; instruction-tuned models): a ``system`` instruction, per exemplar a user turn
  (``exemplar_user``) and the answer as an assistant turn (``exemplar_assistant``), then the ``request`` as the
  last user turn; the engine renders the messages through the model's own chat template. ``opening`` (optional)
  goes before the first user turn after the exemplars (COD: where the example dialogue ends).

Either way the few-shot part depends only on the per-language fields, so it is byte-identical across requests
and vLLM's prefix cache reuses it. :meth:`PromptTemplate.render` gives what a :class:`synth.llm.base.Request`
takes in either form.

Example::

    template = load_template("sap/summary.v1.yaml", form="chat")   # prompts/sap/summary.chat.v1.yaml
    body = template.render([{"passage": "...", "summary": "..."}], {"passage": "..."})
    request = Request(id="p1/summary", sampling=Sampling(), **body)   # body: {"messages": (...)}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

import yaml

from synth.errors import ConfigError
from synth.paths import PROMPTS_DIR

PromptForm = Literal["completion", "chat"]
FORMS = ("completion", "chat")
Message = dict[str, str]
# The version suffix of a template file name (``summary.v1.yaml``): the chat file inserts ``.chat`` before it.
_VERSIONED = re.compile(r"^(?P<stem>.+?)(?P<version>\.v\d+)?\.yaml$")


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    request: str
    exemplar: str = ""
    header: str = ""
    separator: str = "\n\n"
    form: PromptForm = "completion"
    system: str = ""
    exemplar_user: str = ""
    exemplar_assistant: str = ""
    opening: str = ""

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise TypeError(f"form must be one of {', '.join(FORMS)}, not {self.form!r}")
        chat_only = {"system": self.system, "exemplar_user": self.exemplar_user,
                     "exemplar_assistant": self.exemplar_assistant, "opening": self.opening}
        if self.form == "completion" and any(chat_only.values()):
            raise TypeError(f"{', '.join(k for k, v in chat_only.items() if v)} need form: chat")
        if self.form == "chat" and (self.exemplar or self.header):
            raise TypeError("a chat template has system/exemplar_user/exemplar_assistant, not header/exemplar")
        if self.form == "chat" and bool(self.exemplar_user) != bool(self.exemplar_assistant):
            raise TypeError("a chat template needs both exemplar_user and exemplar_assistant, or neither")

    @property
    def tag(self) -> str:
        """``<name>@<version>``, recorded on every row as part of its prompt version (the name carries the form)."""
        return f"{self.name}@{self.version}"

    @property
    def chat(self) -> bool:
        return self.form == "chat"

    # -- completion -------------------------------------------------------------------------------------------
    def render_prefix(self, exemplars: Iterable[dict[str, Any]] = (), **fields: Any) -> str:
        """Completion form: header plus every exemplar, each followed by the separator."""
        self._need("completion")
        parts = [self.header.format(**fields)] if self.header else []
        parts += [self.exemplar.format(**fields, **example) for example in exemplars]
        return "".join(part + self.separator for part in parts)

    def render_request(self, **fields: Any) -> str:
        """The request text (completion) or the last user turn's content (chat)."""
        return self.request.format(**fields)

    # -- chat -------------------------------------------------------------------------------------------------
    def render_chat_prefix(self, exemplars: Iterable[dict[str, Any]] = (), **fields: Any) -> tuple[Message, ...]:
        """Chat form: the system turn (if any) and one user/assistant pair per exemplar."""
        self._need("chat")
        messages: list[Message] = [{"role": "system", "content": self.system.format(**fields)}] if self.system else []
        for example in exemplars:
            messages += self.render_turns(example, **fields)
        return tuple(messages)

    def render_turns(
        self, example: Mapping[str, Any], *, opening: bool = False, **fields: Any
    ) -> tuple[Message, Message]:
        """One exemplar (or an earlier exchange of the same shape) as a user turn and the assistant's answer;
        ``opening``: the exchange is the first after the exemplars (COD's dialogue so far)."""
        self._need("chat")
        user = self.exemplar_user.format(**fields, **example)
        return (
            {"role": "user", "content": (self.opening.format(**fields) + user) if opening else user},
            {"role": "assistant", "content": self.exemplar_assistant.format(**fields, **example)},
        )

    def render_user(self, *, opening: bool = False, **fields: Any) -> Message:
        """The request as the last user turn; ``opening``: it is the first turn after the exemplars."""
        self._need("chat")
        content = self.request.format(**fields)
        return {"role": "user", "content": (self.opening.format(**fields) + content) if opening else content}

    # -- either form ------------------------------------------------------------------------------------------
    def render(
        self, exemplars: Iterable[dict[str, Any]] = (), request: Mapping[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """The prompt of one request in this template's form: ``{"prompt": text}`` or ``{"messages": turns}``.

        ``fields`` fill the few-shot part (and the request too); ``request`` holds the fields only the request has.
        """
        values = {**fields, **(request or {})}
        if self.chat:
            exemplars = tuple(exemplars)
            last = self.render_user(opening=bool(exemplars), **values)
            return {"messages": self.render_chat_prefix(exemplars, **fields) + (last,)}
        return {"prompt": self.render_prefix(exemplars, **fields) + self.render_request(**values)}

    def _need(self, form: str) -> None:
        if self.form != form:
            raise ValueError(f"prompt template {self.name} is in {self.form} form, not {form}")


def template_path(relative: str, form: str = "completion") -> str:
    """The file of ``relative``'s template in ``form``: ``sap/summary.v1.yaml`` -> ``sap/summary.chat.v1.yaml``."""
    if form == "completion":
        return relative
    if form != "chat":
        raise ValueError(f"unknown prompt form {form!r}")
    match = _VERSIONED.match(relative)
    if match is None:
        raise ValueError(f"not a template file name: {relative!r}")
    return f"{match['stem']}.chat{match['version'] or ''}.yaml"


def is_chat_file(path: Path) -> bool:
    """Whether ``path`` is a chat-form template (``*.chat.v1.yaml``)."""
    return ".chat." in path.name and path.suffix == ".yaml"


def prompt_files(folder: Path, form: str) -> list[Path]:
    """The files under ``folder`` that prompts of ``form`` are rendered from, for a row's identity: chat uses every
    file (its templates and the shared exemplars); completion all but the chat templates, so adding or editing a
    chat template leaves the rows of completion runs as they are."""
    if form == "chat" or not folder.is_dir():
        return [folder]
    return sorted(p for p in folder.rglob("*") if p.is_file() and not is_chat_file(p))


@lru_cache(maxsize=128)
def load_template(relative: str, root: Path = PROMPTS_DIR, form: str = "completion") -> PromptTemplate:
    """Load ``prompts/<relative>`` in ``form`` (:func:`template_path`); its name is the path without ``.yaml``."""
    relative = template_path(relative, form)
    path = root / relative
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError:
        raise ConfigError("prompt template not found", file=str(path)) from None
    try:
        template = PromptTemplate(name=relative.removesuffix(".yaml"), **data)
    except TypeError as exc:
        raise ConfigError(f"bad prompt template ({exc})", file=str(path)) from None
    if template.form != form:
        raise ConfigError(f"expected a {form} template, the file says form: {template.form}", file=str(path))
    return template
