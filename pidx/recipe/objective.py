"""`loss.name` as an objective class: the built-in losses by name, any `Objective` by import path."""

from __future__ import annotations

import difflib

from ..errors import RecipeError
from ..training.losses import LOSSES
from ..utils import resolve_named_class


def objective_class(name: str) -> type:
    """The `Objective` class a `loss.name` import path names (a built-in loss name is not one)."""
    from ..training.objectives import Objective

    if ":" not in name:
        close = difflib.get_close_matches(name, list(LOSSES), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise RecipeError(f"'loss.name' must be one of {list(LOSSES)} or 'package.module:Class' (a pidx "
                          f"Objective), got {name!r}{hint}")
    try:
        return resolve_named_class(name, {}, Objective, kind="objective")
    except ValueError as exc:
        raise RecipeError(f"'loss.name': {exc}") from None


__all__ = ["objective_class"]
