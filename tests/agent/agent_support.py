"""Constants and helpers the agent tests import (conftest.py is not importable by name
when several test folders each have one)."""

import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EAL = ["--no-huge", "-m", "256", "--no-pci", "-l", "0,1", "--log-level", "error"]


def wait_file(path: Path, proc, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            proc.log_file.seek(0)
            raise AssertionError(f"exited {proc.returncode} before writing {path}:\n"
                                 f"{proc.log_file.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {path} after {timeout}s")
        time.sleep(0.05)


