"""Build the preload agent (``mptrack_agent.c``) and find the built library.

``preload_path()`` returns the absolute path of ``libmptrack_agent.so``
(the core ``mptrack_agent.c``, its modules ``agent_*.c`` and its unwinder
``unwind.c``: every ``.c`` of ``SOURCES``), compiling it first with
``cc`` against ``pkg-config libdpdk`` when the cached build is missing or
stale.  A build is identified by a hash of the sources, the
compiler command line, the compiler's version and DPDK's version, so editing a
source, changing compiler or upgrading DPDK all rebuild.  The library goes to
``$MPTRACK_CACHE_DIR``, else ``$XDG_CACHE_HOME/gdb-mptrack``, else
``~/.cache/gdb-mptrack``, written to a temporary name and renamed, so
concurrent builds (parallel tests) never see a half-written file.

No gdb here: ``python3 -m gdb_mptrack preload-path`` runs it from a shell.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import tempfile
from pathlib import Path

AGENT_DIR = Path(__file__).resolve().parent
SOURCES = ("mptrack_agent.c", "mptrack_agent.h", "agent_private.h", "agent_stacks.c",
           "agent_faults.c", "agent_malloc.c", "agent_dump.c", "agent_log.c", "agent_attach.c",
           "unwind.c", "unwind.h")
C_SOURCES = [name for name in SOURCES if name.endswith(".c")]
LIBRARY = "libmptrack_agent"

CFLAGS = ["-O2", "-g", "-fPIC", "-shared", "-fno-omit-frame-pointer", "-fvisibility=hidden",
          "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]
LIBS = ["-ldl", "-lpthread"]


class BuildError(Exception):
    """The agent could not be built; the message says why, in one line or a compiler log."""


def _run(argv: list[str]) -> str:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BuildError(f"cannot run {argv[0]}: {exc}") from None
    if res.returncode != 0:
        raise BuildError(f"{shlex.join(argv)} failed:\n{res.stderr.strip()}")
    return res.stdout


def dpdk_flags() -> tuple[list[str], list[str], str]:
    """(cflags, libs, version) of the installed DPDK, from pkg-config."""
    try:
        cflags = _run(["pkg-config", "--cflags", "libdpdk"]).split()
        libs = _run(["pkg-config", "--libs", "libdpdk"]).split()
        version = _run(["pkg-config", "--modversion", "libdpdk"]).strip()
    except BuildError as exc:
        raise BuildError(f"{exc}\n(install libdpdk-dev and pkg-config)") from None
    return cflags, libs, version


def cache_dir() -> Path:
    env = os.environ.get("MPTRACK_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "gdb-mptrack"


def build_command(output: Path, cc: str | None = None, extra_cflags: list[str] = ()) -> list[str]:
    cflags, libs, _ = dpdk_flags()
    cc = cc or os.environ.get("CC", "cc")
    return ([cc] + list(extra_cflags) + CFLAGS + cflags + [str(AGENT_DIR / name) for name in C_SOURCES]
            + ["-o", str(output)] + libs + LIBS)


def build_key(cc: str | None = None) -> str:
    """Hash of everything the built library depends on."""
    cc = cc or os.environ.get("CC", "cc")
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (AGENT_DIR / name).read_bytes() + b"\0")
    cflags, libs, version = dpdk_flags()
    h.update(" ".join(CFLAGS + cflags + libs + LIBS).encode())
    h.update(version.encode())
    h.update(_run([cc, "--version"]).encode())
    return h.hexdigest()[:16]


def build(directory: Path | None = None, force: bool = False, variant: str = "",
          extra_cflags: list[str] = ()) -> Path:
    """Build the agent (or a named variant compiled with extra_cflags) into ``directory``
    (default: the cache) unless up to date; the file name carries the variant and the build key."""
    directory = Path(directory) if directory else cache_dir()
    name = f"{LIBRARY}-{variant}-" if variant else f"{LIBRARY}-"
    target = directory / f"{name}{build_key()}.so"
    if target.exists() and not force:
        return target
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(f"cannot create {directory}: {exc}") from None
    fd, tmp = tempfile.mkstemp(prefix=f".{name}", suffix=".so", dir=directory)
    os.close(fd)
    try:
        _run(build_command(Path(tmp), extra_cflags=extra_cflags))
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def preload_path() -> Path:
    """The absolute path of an up-to-date agent library, built if needed."""
    return build().resolve()
