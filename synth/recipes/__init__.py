"""The recipe registry: every recipe is a :class:`~synth.recipes.base.Recipe` subclass registered under the Python
entry-point group ``polysynth.recipes``.

polysynth's own three (``sap``, ``entitycs``, ``cod``) are registered in its ``pyproject.toml`` exactly as a third
party registers one in theirs::

    [project.entry-points."polysynth.recipes"]
    upper = "my_package.recipe:UpperRecipe"

Everything that differs by recipe (the config union, the CLI's choices, the flows and deployments, the dataset
card, the report, the input id field) reads this registry, so a recipe is added by its own package, its prompts
and a config file (docs/architecture.md). Classes are imported on first use, so ``synth --help`` stays fast.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points

from synth.errors import ConfigError
from synth.recipes.base import Recipe

ENTRY_POINT_GROUP = "polysynth.recipes"


@lru_cache(maxsize=1)
def _registered() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        other = found.get(entry.name)
        if other is not None and other.value != entry.value:
            raise ConfigError(
                f"two packages register the recipe {entry.name!r}: {other.value} and {entry.value}; uninstall one"
            )
        found[entry.name] = entry
    return found


def recipe_names() -> list[str]:
    """The names of every registered recipe, sorted."""
    return sorted(_registered())


def recipe_class(name: str) -> type[Recipe]:
    """The Recipe subclass registered under ``name``; ConfigError for a name nobody registered."""
    return _load(name)


@lru_cache(maxsize=None)
def _load(name: str) -> type[Recipe]:
    entry = _registered().get(name)
    if entry is None:
        known = recipe_names()
        if not known:
            raise ConfigError(
                f"no recipes are registered (entry-point group {ENTRY_POINT_GROUP!r}): install polysynth with "
                "`pip install -e .` so its entry points exist"
            )
        raise ConfigError(f"unknown recipe {name!r}; expected one of {', '.join(known)}", field="recipe")
    cls = entry.load()
    if not (isinstance(cls, type) and issubclass(cls, Recipe)):
        raise ConfigError(f"entry point {entry.value} of recipe {name!r} is not a synth.recipes.base.Recipe subclass")
    if cls.name != name:
        raise ConfigError(f"entry point {name!r} loads {entry.value}, whose name is {cls.name!r}: they must match")
    return cls
