"""Reading a run config: a YAML file (or a mapping) validated by its recipe's ``config_model``.

The recipe is named by the config's ``recipe:`` key and looked up in the registry (:mod:`synth.recipes`); errors
name the file and the dotted field. Relative file paths resolve against the config file's folder.

Example::

    from synth.config_file import load_config
    config = load_config("data/configs/sap.yaml", overrides={"languages": ["de", "hi"]})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from synth.config import RunConfigBase
from synth.errors import ConfigError
from synth.recipes import recipe_class, recipe_names


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    field = ".".join(str(part) for part in error["loc"])
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "value_error":
        message = message.removeprefix("Value error, ")  # pydantic's prefix for our own validators' messages
    return field, message


def parse_config(data: dict[str, Any], *, source: str, recipe: str | None = None) -> RunConfigBase:
    """Validate a config mapping; ``source`` names it in errors. ``recipe`` fills or checks ``recipe:``."""
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of config keys", file=source)
    data = dict(data)
    if recipe is not None:
        if data.setdefault("recipe", recipe) != recipe:
            raise ConfigError(f"config is for recipe '{data['recipe']}', not '{recipe}'", file=source, field="recipe")
    name = data.get("recipe")
    if name not in recipe_names():
        raise ConfigError(f"expected one of {', '.join(recipe_names())}, got {name!r}", file=source, field="recipe")
    try:
        return recipe_class(name).config_model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field, message = _describe(first)
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{message}{more}", file=source, field=field) from None


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def load_config(path: str | Path, *, recipe: str | None = None, overrides: dict[str, Any] | None = None) -> RunConfigBase:
    """Read a YAML run config; relative input paths resolve against the config file's folder.

    ``overrides`` maps dotted keys (``"input.limit"``, ``"languages"``) to values, as the CLI flags do.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file not found", file=str(path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid YAML: {str(exc).splitlines()[0]}", file=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of config keys", file=str(path))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, dotted, value)
    config = parse_config(data, source=str(path), recipe=recipe)
    return resolve_paths(config, base=path.parent, source=str(path))


def resolve_paths(config: RunConfigBase, *, base: Path, source: str) -> RunConfigBase:
    """Make relative file paths absolute against ``base`` and check that inputs exist."""

    def absolute(value: str | None) -> str | None:
        if value is None or "://" in value or Path(value).is_absolute():
            return value  # a URL is the store's to accept or refuse, never a folder named "s3:"
        return str((base / value).resolve())

    input_ = config.input.model_copy(update={"path": absolute(config.input.path)})
    if input_.path is not None and not Path(input_.path).exists():
        raise ConfigError(f"input file not found: {input_.path}", file=source, field="input.path")
    update: dict[str, Any] = {"input": input_, "output": config.output.model_copy(update={"dir": absolute(config.output.dir)})}
    for dotted, noun in config.file_fields.items():
        section_name, _, key = dotted.partition(".")
        section = update.get(section_name, getattr(config, section_name))
        value = absolute(getattr(section, key))
        if value is None:
            continue
        if not Path(value).exists():
            raise ConfigError(f"{noun} not found: {value}", file=source, field=dotted)
        update[section_name] = section.model_copy(update={key: value})
    return config.model_copy(update=update)
