"""The device names the sequence model takes, checked before any torch import (the worker's settings and the
training CLI both check them)."""

from __future__ import annotations

DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"  # the whole name must match
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
