import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
MULTI30K = Path(os.environ.get("NMT_DATA", REPO.parent / "shared" / "data" / "multi30k"))


@pytest.fixture(scope="session")
def multi30k() -> Path:
    if not (MULTI30K / "train.en.gz").is_file():
        # Named explicitly (as CI does), a missing corpus is an error, not a quiet pass.
        if "NMT_DATA" in os.environ:
            pytest.fail(f"NMT_DATA={MULTI30K}: Multi30k not found there")
        pytest.skip(f"Multi30k not found at {MULTI30K} (set NMT_DATA)")
    return MULTI30K


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: intra-op threads only add synchronisation cost (large on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path
