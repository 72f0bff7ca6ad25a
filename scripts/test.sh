#!/usr/bin/env bash
# Set up and run the test suite. Run from the repository root; the tests read Multi30k from
# $NMT_DATA (default: ../shared/data/multi30k next to the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q torch==2.13.0          # before anything that needs torch
pip install -q -e ".[test]"
ruff check .
python -m pytest -q
