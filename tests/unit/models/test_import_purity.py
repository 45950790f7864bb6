"""``models`` must import without the streaming stack (faust, aiokafka, redis)."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "models",
    "models.cli",
    "models.pipeline",
    "models.ensemble",
    "models.checkpoint",
    "models.scorers",
    "models.sequence.train",
    "models.evaluation.protocol",
]


def test_importing_models_pulls_in_no_streaming_packages() -> None:
    """Every module of the package (walked, so a new one is covered), not only the listed entry points."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import models\n"
        f"for m in {MODULES!r}: importlib.import_module(m)\n"
        "for info in pkgutil.walk_packages(models.__path__, 'models.'):\n"
        "    if not info.name.endswith('__main__'): importlib.import_module(info.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'faust', 'aiokafka', 'redis', 'mode', "
        "'stream_app'})\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'faust', 'aiokafka', 'redis', 'mode'})\n"
        "print(','.join(bad))\n"
        "assert 'models.scorers.text' in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == ""
