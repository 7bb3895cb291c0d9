"""Recipes: typed sections (`sections`), YAML in and out (`yamlio`), validation (`parse`)."""

from .objective import objective_class
from .parse import annotated_recipe, callback_class, dump_recipe, load_recipe, reference_markdown, validate_recipe
from .sections import (
    CallbackSpec, DataSection, EvaluationSection, ExtraGroup, LossSection, ModelSection, OptimizerSection, Recipe,
    SelectionSection, TrainerSection,
)
from .yamlio import apply_overrides, parse_override, read_yaml

__all__ = ["annotated_recipe", "callback_class", "objective_class", "dump_recipe", "load_recipe", "reference_markdown", "validate_recipe", "CallbackSpec",
           "DataSection", "EvaluationSection", "ExtraGroup", "LossSection", "ModelSection", "OptimizerSection",
           "Recipe", "SelectionSection", "TrainerSection", "apply_overrides", "parse_override", "read_yaml"]
