"""Refreeze tests/data/resolved_recipes: the resolved form of every shipped recipe.

Run after a deliberate change of a recipe or of a recipe default, and say why in the commit:
    python tests/scripts/freeze_recipes.py
"""

from pathlib import Path

from pidx.recipe import dump_recipe, load_recipe

ROOT = Path(__file__).resolve().parents[2]
for path in sorted((ROOT / "recipes").glob("*.yaml")):
    (ROOT / "tests" / "data" / "resolved_recipes" / path.name).write_text(dump_recipe(load_recipe(path)))
