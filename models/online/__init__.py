"""Learning while serving: training samples emitted per event (``samples``), and the learner
that consumes them (``learner``).

Pure code (no faust, aiokafka or redis): the stream trainer process calls it,
and so does the prequential benchmark (``benchmarks/online_learning.py``).
Import from the modules (``models.online.learner``); this package re-exports
nothing, so that ``models.evaluation.prequential`` can use the samples module
without importing the learner.
"""
