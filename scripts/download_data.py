"""Download Multi30k task 1 (raw, en/de) and verify its SHA-256 checksums.

    python scripts/download_data.py [FOLDER]      (default: data/multi30k)
"""

import logging
import sys

from nmt.data.corpus import download_multi30k

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    folder = sys.argv[1] if len(sys.argv) > 1 else "data/multi30k"
    download_multi30k(folder)
    print(f"Multi30k in {folder}")
