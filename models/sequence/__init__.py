"""SASRec-style causal transformer over item, event-type and position embeddings."""

from models.sequence.config import SeqConfig, TrainConfig
from models.sequence.model import SeqRec

__all__ = ["SeqConfig", "SeqRec", "TrainConfig"]
