"""Text is data: the one rule for what may not reach a log line or a terminal raw.

Ids, gate names, titles, comments and who decided are shown back (logs, `status`, `list`,
`costs`); a control character in them could forge a log line or drive a terminal. The workflow's
models refuse them (`first_unsafe`), and the CLI escapes any it prints from older data (`escape`).
"""

from __future__ import annotations

import re

__all__ = ["UNSAFE", "escape", "first_unsafe"]

UNSAFE = re.compile(
    "["
    "\x00-\x1f\x7f-\x9f"  # C0 (ESC, CR, LF, TAB, BEL, ...), DEL, C1 (CSI, OSC, ...)
    "\u202a-\u202e\u2066-\u2069"  # bidi embeddings, overrides and isolates
    "\u2028\u2029"  # line and paragraph separators
    "\ud800-\udfff"  # lone surrogates: bytes that were not UTF-8 (would not even encode)
    "]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def first_unsafe(text: str, *, lines: bool = False) -> str | None:
    """The first character of `text` that `escape()` would escape; None when there is none.
    `lines`: a newline or a tab is no fault (a comment may have several lines)."""
    for match in UNSAFE.finditer(text):
        if not (lines and match.group() in "\n\t"):
            return match.group()
    return None


def escape(text: object) -> str:
    """`text` fit for a terminal: every `UNSAFE` character shown as an escape (`\\x1b`, `\\n`,
    `\\u202e`); everything else, other Unicode included, as it is."""
    value = text if isinstance(text, str) else str(text)
    return UNSAFE.sub(_escape, value)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
