"""Repair the encoding damage in dataset transcripts (MELD's U+0092 where an apostrophe belongs).

MELD's CSVs were written from Windows-1252 text that was decoded as Latin-1 somewhere on the
way, so the curly quote ' (0x92 in cp1252) arrives as the C1 control character U+0092, the
ellipsis as U+0085, the em dash as U+0097. ``repair_text`` maps every C1 control back through
cp1252, turns non-breaking spaces into spaces and, by default, writes typographic quotes and the
ellipsis in ASCII so that a gold transcript and an ASR transcript spell "don't" the same way.
"""

from __future__ import annotations

import re

#: Typographic characters written the ASCII way (dashes stay: they carry meaning in MELD).
ASCII_PUNCTUATION = {
    "\u2018": "'",  # left single quote
    "\u2019": "'",  # right single quote / apostrophe
    "\u201c": '"',
    "\u201d": '"',
    "\u2026": "...",
    "\u00a0": " ",  # non-breaking space
}
_C1 = re.compile("[\u0080-\u009f]")
_SPACES = re.compile(r"[ \t]{2,}")


def _from_cp1252(match: re.Match[str]) -> str:
    try:
        return match.group().encode("latin-1").decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8d, 0x8f, 0x90, 0x9d are unassigned in cp1252
        return ""


def repair_text(text: str, *, ascii_punctuation: bool = True) -> str:
    """Undo cp1252-as-Latin-1 mojibake; optionally ASCII quotes and ellipses; tidy spaces."""
    repaired = _C1.sub(_from_cp1252, text)
    if ascii_punctuation:
        for bad, good in ASCII_PUNCTUATION.items():
            repaired = repaired.replace(bad, good)
    else:
        repaired = repaired.replace("\u00a0", " ")
    return _SPACES.sub(" ", repaired).strip()


def needs_repair(text: str) -> bool:
    """True when ``text`` holds C1 control characters (the signature of the damage)."""
    return bool(_C1.search(text))
