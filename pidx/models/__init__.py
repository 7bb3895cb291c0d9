"""Equinox PID architectures sharing one call contract (see `pidx.models.base`)."""

from .attention import masked_self_attention
from .base import ACTIVATIONS, PIDModel, activation, batched_forward, build_model, model_names, resolve_model_class
from .ensemble import Ensemble, is_ensemble, make_ensemble, member_key
from .embeddings import (GROUP_EMBEDDINGS, GroupEmbedding, MLPGroupEmbedding, StackedGroupEmbeddings,
                         dense_group_embedding, mlp_group_embedding)
from .fse import ClassifierHead, DetectorAwareFSE, FSEAttention, FSEEncoder
from .mlp import DNN, SimpleNN

__all__ = ["ACTIVATIONS", "PIDModel", "activation", "batched_forward", "build_model", "model_names",
           "resolve_model_class", "Ensemble", "is_ensemble", "make_ensemble", "member_key", "ClassifierHead",
           "DetectorAwareFSE", "FSEAttention", "FSEEncoder", "GROUP_EMBEDDINGS", "GroupEmbedding", "MLPGroupEmbedding",
           "StackedGroupEmbeddings", "dense_group_embedding", "mlp_group_embedding", "DNN", "SimpleNN",
           "masked_self_attention"]
