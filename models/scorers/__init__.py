"""Scorers sharing one interface (``Scorer``), by kind, for checkpoints and the CLI."""

from models.scorers.base import Scorer
from models.scorers.covisitation import CovisitationConfig, CovisitationScorer
from models.scorers.popularity import PopularityConfig, PopularityScorer
from models.scorers.sequence import SequenceScorer
from models.scorers.text import TextConfig, TextScorer

SCORERS: dict[str, type[Scorer]] = {
    cls.kind: cls for cls in (PopularityScorer, CovisitationScorer, SequenceScorer, TextScorer)
}

__all__ = [
    "SCORERS",
    "CovisitationConfig",
    "CovisitationScorer",
    "PopularityConfig",
    "PopularityScorer",
    "Scorer",
    "SequenceScorer",
    "TextConfig",
    "TextScorer",
]
