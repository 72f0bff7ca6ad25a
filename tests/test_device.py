"""Freed memory stays in the process: a block of the size of a decoding step's logits is
reused without page faults (glibc would unmap it and fault it in again), and the setting can be
turned off."""

import json
import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import json, resource, torch
from nmt.device import keep_freed_memory, setup_device
setup_device("cpu", 1)      # what every command calls
kept = keep_freed_memory()  # True: in effect
def faults_of_one_step():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.empty(1500, 8000)   # 48 MB, over glibc's mmap threshold
    x.fill_(1.0)                  # touch every page
    del x
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
for _ in range(30):   # the heap settles after a few steps (10 were once too few in CI)
    faults_of_one_step()
print(json.dumps({"kept": kept, "faults": [faults_of_one_step() for _ in range(5)]}))
"""

glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def probe(**env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, env={**os.environ, **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not glibc, reason="the setting is glibc's")
def test_a_freed_large_block_is_reused_without_page_faults():
    res = probe()
    assert res["kept"]
    # 48 MB is about 11,700 pages of 4 KiB; reusing the kept block faults (almost) none.
    assert max(res["faults"]) < 500, res


@pytest.mark.skipif(not glibc, reason="the setting is glibc's")
def test_nmt_system_malloc_leaves_the_allocator_alone():
    res = probe(NMT_SYSTEM_MALLOC="1")
    assert not res["kept"]
    assert min(res["faults"]) > 5000, res   # each step faults its pages in again


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks a machine without CUDA")
def test_a_cuda_device_without_cuda_is_refused_at_once():
    from nmt.device import setup_device

    for name in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match=f"device={name}: no CUDA device here"):
            setup_device(name)


def test_checkpoints_hold_cpu_tensors(tmp_path):
    import torch

    from nmt import checkpoint

    # what a GPU run saves, emulated with the meta device: everything is moved to the CPU
    obj = {"model": {"w": torch.ones(2)}, "nested": [(torch.zeros(1),)], "step": 3}
    assert checkpoint.on_cpu(obj)["nested"][0][0].device.type == "cpu"
    meta = {"w": torch.empty(2, device="meta")}
    with pytest.raises(NotImplementedError):   # .cpu() of a meta tensor: proof that it is called
        checkpoint.save({"model": meta, "config": {}}, tmp_path / "m.pt")
