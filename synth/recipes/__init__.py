"""The recipes, by name. Imported lazily so ``synth --help`` stays fast."""

from __future__ import annotations

import importlib

from synth.recipes.base import Recipe

RECIPES = {
    "sap": "synth.recipes.sap.recipe:SapRecipe",
    "entitycs": "synth.recipes.entitycs.recipe:EntityCSRecipe",
    "cod": "synth.recipes.cod.recipe:CodRecipe",
}


def recipe_class(name: str) -> type[Recipe]:
    """The Recipe subclass registered under ``name``."""
    module, _, attr = RECIPES[name].partition(":")
    return getattr(importlib.import_module(module), attr)
