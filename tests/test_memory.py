"""gradlab._process.keep_freed_memory: freed blocks are reused without faulting their pages in again."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

# Allocate and free a 40 MiB array 20 times and count the minor page faults, in a fresh process each so
# that the setting of one does not leak into the other. glibc maps blocks above its mmap threshold with
# pages of their own and unmaps them on free; the threshold grows with the blocks freed but never past
# 32 MiB (64-bit), so a block of 40 MiB (like W4's 2048 x 2048 float64 weight gradients, 32 MiB and a
# header) is mapped afresh every time.
CODE = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from gradlab._process import keep_freed_memory
    assert keep_freed_memory()
np.ones(5_000_000).sum()  # the first time always faults its pages in
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    a = np.ones(5_000_000)
    del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", CODE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_freed_arrays_are_reused_without_page_faults():
    default, kept = _faults("default"), _faults("keep")
    # glibc's default maps each of the 20 blocks afresh, and a fresh mapping faults its pages in again (at
    # least once each: 4 KiB pages, or 2 MiB ones where transparent huge pages are on, hence no exact
    # count); with the memory kept, the heap pages of the first block are reused, with no fault at all
    assert default >= 20, f"default: {default} faults; expected at least one per fresh block"
    assert kept < default / 20, f"kept: {kept} faults, default: {default}"


def test_it_is_done_once_per_process():
    from gradlab._process import keep_freed_memory

    assert keep_freed_memory() is keep_freed_memory() is True
