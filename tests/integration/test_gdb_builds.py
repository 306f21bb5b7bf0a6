"""The premises of the debug/stripped scenarios: the builds differ as claimed."""

from elftools.elf.elffile import ELFFile


def _elf(path):
    with open(path, "rb") as f:
        elf = ELFFile(f)
        sections = {s.name for s in elf.iter_sections()}
        dynsym = elf.get_section_by_name(".dynsym")
        names = {s.name for s in dynsym.iter_symbols()}
    return sections, names


def test_debug_build_has_dwarf(programs):
    sections, dynsyms = _elf(programs["pools"].debug)
    assert ".debug_info" in sections
    assert "mptrack_checkpoint" in dynsyms


def test_stripped_build_has_no_dwarf_but_the_checkpoint_symbol(programs):
    sections, dynsyms = _elf(programs["pools"].stripped)
    assert not {s for s in sections if s.startswith(".debug")}, sections
    assert "mptrack_checkpoint" in dynsyms
