"""entitycs recipe."""

from synth.recipes.entitycs.recipe import EntityCSRecipe

__all__ = ["EntityCSRecipe"]
