"""cod recipe."""

from synth.recipes.cod.recipe import CodRecipe

__all__ = ["CodRecipe"]
