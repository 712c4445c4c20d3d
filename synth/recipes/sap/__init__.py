"""The sap recipe: {recipe, config, views} of one package (registered in pyproject.toml)."""

from synth.recipes.sap.config import SapConfig
from synth.recipes.sap.recipe import SapRecipe

__all__ = ["SapConfig", "SapRecipe"]
