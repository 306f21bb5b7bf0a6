"""The attach build of the preload agent, and the request gdb writes for it; no gdb here.

`mptrack agent attach` loads the agent into a running process with dlopen.
The preload build keeps its thread-local variables in the initial-exec TLS
model (one %fs-relative load each, the fastest), and a library loaded by
dlopen gets initial-exec TLS only from glibc's small static surplus (about
1.5 KB on Debian 12), which the agent's per-thread memos do not fit:
dlopen then fails with "cannot allocate memory in static TLS block".  The
attach build is the same sources compiled with ``-DMPTRACK_TLS_DYNAMIC``
(global-dynamic TLS through TLS descriptors, ``-mtls-dialect=gnu2``: a call
per access on the fast path, still no lock and no syscall), cached next to
the preload build as ``libmptrack_agent-attach-HASH.so``.

``attach_request`` packs ``struct mptrack_attach_req`` (agent/agent_attach.c)
for one pool: the agent takes every object of the pool as in use (origin
unknown) except the free ones listed.
"""

from __future__ import annotations

import struct
from pathlib import Path

from . import agent

ATTACH_CFLAGS = ["-DMPTRACK_TLS_DYNAMIC", "-mtls-dialect=gnu2"]
LIBRARY_PREFIX = agent.LIBRARY            # every build's file name starts with it
ATTACH_VERSION = 1
ATTACH_TRAP = 1
POOLS_FIELD = 256                         # char pools[256]
REQUEST_HEADER = struct.Struct("<IIQQ%ds" % POOLS_FIELD)


def build(directory: Path | None = None, force: bool = False) -> Path:
    """Build the attach variant into ``directory`` (default: the agent's cache) unless up to date."""
    return agent.build(directory, force, variant="attach", extra_cflags=ATTACH_CFLAGS)


def attach_path() -> Path:
    """The absolute path of an up-to-date attach build, built if needed."""
    return build().resolve()


def attach_request(mp: int, free: list[int], pools_glob: str = "", trap: bool = True) -> bytes:
    """``struct mptrack_attach_req`` for pool ``mp`` followed by its free object addresses."""
    glob = pools_glob.encode()
    if len(glob) >= POOLS_FIELD:
        raise ValueError("pool names too long for the agent (%d bytes, at most %d)"
                         % (len(glob), POOLS_FIELD - 1))
    head = REQUEST_HEADER.pack(ATTACH_VERSION, ATTACH_TRAP if trap else 0, mp, len(free), glob)
    return head + struct.pack("<%dQ" % len(free), *free)
