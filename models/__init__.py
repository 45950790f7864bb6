"""Recommendation models: pure PyTorch/transformers/numpy code.

Importing this package must never pull in faust, aiokafka or redis: the
stream service, replay and offline evaluation all reuse it.
"""
