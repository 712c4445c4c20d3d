"""The cod recipe: {recipe, config, views} of one package (registered in pyproject.toml)."""

from synth.recipes.cod.config import CodConfig
from synth.recipes.cod.recipe import CodRecipe

__all__ = ["CodConfig", "CodRecipe"]
