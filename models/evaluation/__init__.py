"""Offline evaluation: ranking metrics and the leave-one-out protocols."""
