"""``python -m models``: the training and evaluation CLI."""

import sys

from models.cli import main

sys.exit(main())
