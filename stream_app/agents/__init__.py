"""Thin Faust agents: decode, call plain functions, emit."""
