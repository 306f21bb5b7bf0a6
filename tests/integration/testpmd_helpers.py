"""What the testpmd tests share: where testpmd is, its TX counters, and waiting on its output."""

import re
import shutil
import time

TESTPMD = shutil.which("dpdk-testpmd")
TX_PACKETS = re.compile(r"NIC statistics for port 0.*?TX-packets:\s+(\d+)", re.S)


def tx_counts(text):
    """Port 0's TX-packets counts, in the order testpmd printed its periodic statistics."""
    return [int(n) for n in TX_PACKETS.findall(text)]


def wait_for(predicate, timeout, what, log):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{log()[-3000:]}")
        time.sleep(0.1)
