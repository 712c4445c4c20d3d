"""The entitycs recipe: {recipe, config, views} of one package (registered in pyproject.toml)."""

from synth.recipes.entitycs.config import EntityCSConfig
from synth.recipes.entitycs.recipe import EntityCSRecipe

__all__ = ["EntityCSConfig", "EntityCSRecipe"]
