"""Deployment: ONNX export (preprocessing in the graph) for ONNX Runtime and O2Physics."""

from .graph import GraphBuilder, input_columns
from .onnx import model_graph, register_onnx_exporter
from .writer import build_onnx, export_onnx, export_run, onnx_probs, pidx_probs, synthetic_tracks

__all__ = ["GraphBuilder", "input_columns", "model_graph", "register_onnx_exporter", "build_onnx", "export_onnx",
           "export_run", "onnx_probs", "pidx_probs", "synthetic_tracks"]
