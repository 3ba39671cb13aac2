"""Batch inference: the reconstruction chain over event files with Ray Data (full-mission reprocessing)."""

from dampeml.inference.predictor import ChainPredictor, ReprocessError
from dampeml.inference.reprocess import ReprocessConfig, ReprocessResult, reprocess

__all__ = ["ChainPredictor", "ReprocessConfig", "ReprocessError", "ReprocessResult", "reprocess"]
