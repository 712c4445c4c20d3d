"""Which prompt form a model gets: ``engine.prompt_format`` (``auto``, ``completion``, ``chat``) resolved in one place.

``completion`` sends one few-shot text the model continues (base models); ``chat`` sends a system instruction and
the exemplars as user/assistant turns, rendered through the model's own chat template (``synth.prompts``).
``auto`` picks ``chat`` for an instruction-tuned model: its tokenizer has a chat template **and** its name or path
(or its ``config.json``'s ``_name_or_path``) says so (``-it``, ``instruct``, ``chat``; any case). Otherwise
``completion``: a chat template alone proves nothing (the shipped base Gemma 3 270M gets Gemma's, so chat requests
work on it, but it was never tuned to follow turns).

The shipped default model (``engine.model`` empty) is a base model and gets :data:`DEFAULT_MODEL_FORM` without being
loaded: on 8 passages x de/hi/sw/zh of ``data/configs/sap.yaml`` completion kept more rows (README, "Prompt format").
A model that is not a local folder (an HF repo id, a model of an ``openai`` server) is judged by its name alone:
its tokenizer cannot be read here, and the servers of instruction-tuned models serve their chat template. An
``openai`` backend without ``engine.model`` gets ``completion``: set ``prompt_format`` for an instruct server.

The resolution reads only the config and the model folder, never the engine, so a run's row fingerprint and
``prompt_version`` are known before the model is loaded.

Example::

    from synth.config import EngineConfig
    from synth.llm.prompt_format import resolve_prompt_format

    resolve_prompt_format(EngineConfig())                                 # 'completion' (base Gemma 3 270M)
    resolve_prompt_format(EngineConfig(model="/models/gemma-3-270m-it"))  # 'chat' if its tokenizer has a template
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from synth.config import EngineConfig

# What the shipped default model gets under ``auto`` (measured; see the module docstring).
DEFAULT_MODEL_FORM = "completion"
# Names of instruction-tuned checkpoints: gemma-3-270m-it, Qwen2.5-0.5B-Instruct, Llama-2-7b-chat-hf, SmolLM2-chat.
INSTRUCT_NAME = re.compile(r"(?<![a-z0-9])it(?![a-z])|instruct|chat", re.IGNORECASE)
# Where a Hugging Face model folder keeps its chat template.
_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


def resolve_prompt_format(config: EngineConfig) -> str:
    """``completion`` or ``chat`` for ``config`` (see the module docstring)."""
    if config.prompt_format != "auto":
        return config.prompt_format
    if config.model is None:
        # vllm: the shipped default model; openai: whatever the server serves first, unknown here (set the form)
        return DEFAULT_MODEL_FORM if config.backend == "vllm" else "completion"
    return model_prompt_format(config.model)


@lru_cache(maxsize=32)
def model_prompt_format(model: str) -> str:
    """``auto``'s answer for a model path or name: ``chat`` for an instruction-tuned model, else ``completion``."""
    path = Path(model)
    if not path.is_dir():
        return "chat" if INSTRUCT_NAME.search(model) else "completion"
    return "chat" if has_chat_template(path) and is_instruct(path) else "completion"


def has_chat_template(folder: Path) -> bool:
    """Whether the tokenizer in ``folder`` has a chat template (in ``tokenizer_config.json`` or its own file)."""
    if any((folder / name).is_file() for name in _TEMPLATE_FILES):
        return True
    return bool(_read_json(folder / "tokenizer_config.json").get("chat_template"))


def is_instruct(folder: Path) -> bool:
    """Whether the folder's name (or the name its ``config.json`` was made from) says instruction-tuned."""
    names = [folder.name, Path(str(_read_json(folder / "config.json").get("_name_or_path") or "")).name]
    return any(INSTRUCT_NAME.search(name) for name in names)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
