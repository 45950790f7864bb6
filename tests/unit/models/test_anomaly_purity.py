"""``models.anomaly`` runs on numpy and the standard library: no torch, no streaming stack."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_anomaly_package_pulls_in_neither_torch_nor_streaming_packages() -> None:
    code = (
        "import sys, models.anomaly, models.anomaly.inject\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'faust', 'aiokafka', 'redis', 'mode'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == ""
