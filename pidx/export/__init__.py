"""Deployment: ONNX export (preprocessing in the graph) for ONNX Runtime and O2Physics.

A run directory is exported by `pidx.runs.export_run` (`pidx export`).
"""

from .graph import GraphBuilder, input_columns
from .onnx import model_graph, register_onnx_exporter
from .writer import build_onnx, export_onnx, onnx_probs, pidx_probs, synthetic_tracks

__all__ = ["GraphBuilder", "input_columns", "model_graph", "register_onnx_exporter", "build_onnx", "export_onnx",
           "onnx_probs", "pidx_probs", "synthetic_tracks"]
