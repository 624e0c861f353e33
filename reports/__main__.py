"""``python -m reports ...`` (see reports/cli.py)."""

import sys

from guards.cli import guarded
from reports.cli import main

sys.exit(guarded("python -m reports", main))
