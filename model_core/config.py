"""The transformer's hyper-parameters: they live in the torch-free format package (``model_core.format.config``),
so the registry can check a Hugging Face ``config.json`` at publish; this name is kept for the model code."""

from model_core.format.config import FLOAT_DTYPES, MAX_DIMENSION, MAX_SEQ_LEN, ModelConfig, RopeScaling

__all__ = ["FLOAT_DTYPES", "MAX_DIMENSION", "MAX_SEQ_LEN", "ModelConfig", "RopeScaling"]
