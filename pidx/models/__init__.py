"""Equinox PID architectures sharing one call contract (see `pidx.models.base`)."""

from .base import PIDModel, build_model, model_names, resolve_model_class
from .fse import ClassifierHead, DetectorAwareFSE, FSEAttention, GroupEmbedding
from .ensemble import Ensemble, make_ensemble, member_key
from .mlp import DNN, SimpleNN

__all__ = ["PIDModel", "build_model", "model_names", "resolve_model_class", "ClassifierHead",
           "DetectorAwareFSE", "FSEAttention", "GroupEmbedding", "DNN", "SimpleNN", "Ensemble", "make_ensemble",
           "member_key"]
