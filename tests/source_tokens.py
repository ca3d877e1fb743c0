"""Reading Python source as code: identifiers and string literals without comments and docstrings.

Shared by the tests that check what the code names (tests/test_core_names_no_plugin.py,
tests/test_plugin_dependencies.py).
"""

from __future__ import annotations

import io
import tokenize
from pathlib import Path


def code_tokens(path: Path) -> list[tokenize.TokenInfo]:
    """Identifiers (``NAME``) and string literals (``STRING``, f-strings included) of ``path``; comments
    and docstrings (any statement that is only a string) are dropped."""
    sig = [t for t in tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
           if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING)]
    starts = (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
    out = []
    for i, t in enumerate(sig):
        if t.type == tokenize.STRING:
            before = sig[i - 1].type if i else tokenize.NEWLINE
            after = sig[i + 1].type if i + 1 < len(sig) else tokenize.ENDMARKER
            if before in starts and after in (tokenize.NEWLINE, tokenize.ENDMARKER):
                continue  # a string-only statement: a docstring
            out.append(t)
        elif t.type == tokenize.NAME:
            out.append(t)
    return out


def literal(text: str) -> str:
    """The text of a string token without its prefix and quotes."""
    body = text.lstrip("rRbBuUfF")
    q = 3 if body[:3] in ('"""', "'''") else 1
    return body[q:-q]
