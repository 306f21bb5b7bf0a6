"""Bad input: each gives one clear `mptrack: ` line on stderr and no traceback."""

import os
import re
import shutil

from elftools.elf.elffile import ELFFile

POOLS = ["cached", "nocache", "stack", "rts", "hts", "mpsc", "spmc", "mbufs"]


def test_help_lists_subcommands(lab):
    res = lab.run_gdb([("help", "help mptrack")])
    text = res.section("help")
    for sub in ("pools", "dump", "object"):
        assert re.search(rf"^mptrack {sub}\b", text, re.M), text
    assert "Traceback" not in res.stderr


def test_loads_from_any_cwd(lab, tmp_path):
    res = lab.run_gdb([("help", "help mptrack pools")], cwd=tmp_path)
    assert res.section("help").strip(), str(res)
    assert "Traceback" not in res.stderr and not res.error_lines(), str(res)


def test_pools_without_a_process(lab, assert_clean_error):
    res = lab.run_gdb(["mptrack pools"])
    assert_clean_error(res)


def test_pools_in_a_process_without_dpdk(lab, assert_clean_error):
    sleeper = lab.spawn(["sleep", "100"])
    res = lab.run_gdb(["mptrack pools"], pid=sleeper.pid)
    assert_clean_error(res)
    assert sleeper.poll() is None, "gdb should leave the process running"


def test_dump_unknown_pool_lists_the_pools(lab, assert_clean_error, programs, debug_gcore):
    _, core = debug_gcore
    res = lab.run_gdb(["mptrack dump nosuchpool"], files=[programs["pools"].debug, core])
    line = assert_clean_error(res, "nosuchpool")
    for name in POOLS:
        assert re.search(rf"\b{name}\b", line), f"{name} not listed in {line!r}"


def test_dump_bad_state(lab, assert_clean_error, programs, debug_gcore):
    _, core = debug_gcore
    res = lab.run_gdb(["mptrack dump cached --state bogus"],
                      files=[programs["pools"].debug, core])
    assert_clean_error(res)


def _segment_of(core, addr):
    with open(core, "rb") as f:
        for seg in ELFFile(f).iter_segments():
            if seg["p_type"] == "PT_LOAD" and seg["p_vaddr"] <= addr < seg["p_vaddr"] + seg["p_memsz"]:
                return seg["p_offset"] + (addr - seg["p_vaddr"]), seg["p_filesz"]
    return None, 0


def _truncated_half(core, truth, tmp_path):
    cut = tmp_path / f"truncated-{core.name}"
    shutil.copyfile(core, cut)
    half = os.path.getsize(cut) // 2
    os.truncate(cut, half)
    # The premise: the pools' objects are past the cut.
    offset, _ = _segment_of(core, int(truth["pools"]["cached"]["held"][0], 16))
    assert offset is not None and offset >= half, "pool memory is not in the cut-off half"
    return cut


def test_truncated_gcore(lab, assert_clean_error, programs, debug_gcore, tmp_path):
    # gdb itself refuses this one (its section headers are at the end).
    truth, core = debug_gcore
    cut = _truncated_half(core, truth, tmp_path)
    res = lab.run_gdb(["mptrack pools"], files=[programs["pools"].debug, cut])
    assert_clean_error(res)


def test_truncated_kernel_core(lab, assert_clean_error, programs, debug_kcore, tmp_path):
    # gdb opens this one with a warning; the pools' memory is just not there.
    truth, core = debug_kcore
    cut = _truncated_half(core, truth, tmp_path)
    res = lab.run_gdb(["mptrack pools"], files=[programs["pools"].debug, cut])
    assert_clean_error(res)
    res = lab.run_gdb(["mptrack dump cached"], files=[programs["pools"].debug, cut])
    assert_clean_error(res)


def test_core_without_pool_memory_names_coredump_filter(lab, assert_clean_error, programs,
                                                        gcore_of):
    binary = programs["pools"].debug
    truth, core = gcore_of(binary, coredump_filter="0")
    # The premise: the pools' memory really is missing from this core.
    offset, filesz = _segment_of(core, int(truth["pools"]["cached"]["addr"], 16))
    assert offset is None or filesz == 0, "pool memory is in the core anyway"
    res = lab.run_gdb(["mptrack pools"], files=[binary, core])
    assert_clean_error(res, "coredump_filter")
