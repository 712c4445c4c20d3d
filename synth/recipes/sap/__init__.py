"""sap recipe."""

from synth.recipes.sap.recipe import SapRecipe

__all__ = ["SapRecipe"]
