"""Fixtures of the unit tests: the shipped layout and a fresh FakeMemory, no gdb anywhere."""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from mptrack_fakes import FakeMemory, shipped_layout, write_ops_table  # noqa: E402


@pytest.fixture
def layout():
    return shipped_layout()


@pytest.fixture
def mem(layout):
    """A FakeMemory already holding the ops table (tests/unit/mptrack_fakes.OPS)."""
    memory = FakeMemory()
    write_ops_table(memory, layout)
    return memory
