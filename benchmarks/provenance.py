"""The code a benchmark measures: read once when it starts (commits made while a long run goes
on are not what ran), with "-dirty" when the tree had uncommitted changes."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def code_version() -> str:
    """`git describe --always --dirty` of the repository ("unknown" outside a git checkout)."""
    out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"],
                         capture_output=True, text=True, cwd=ROOT)
    return out.stdout.strip() or "unknown"
