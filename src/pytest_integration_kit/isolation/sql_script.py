"""An SQL script (a seed file) cut into statements, sent one by one: drivers differ in
whether they accept several at once."""

from __future__ import annotations

__all__ = ["split_sql"]


def split_sql(script: str) -> list[str]:  # noqa: PLR0912 - one small lexer, kept in one piece
    """Split an SQL script into statements on ``;`` outside quotes, comments and $$ bodies.

    Enough for seed files (INSERTs, CREATE FUNCTION with dollar quoting); drivers differ
    in whether they accept several statements at once, so we send them one by one.
    """
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(script)
    while i < n:
        ch = script[i]
        if ch in "'\"`":
            end = i + 1
            while end < n:
                if script[end] == ch:
                    if end + 1 < n and script[end + 1] == ch:  # doubled quote
                        end += 2
                        continue
                    break
                if script[end] == "\\" and ch != '"':
                    end += 1
                end += 1
            current.append(script[i : end + 1])
            i = end + 1
            continue
        if script.startswith("--", i) or (ch == "#" and not current):
            end = script.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if script.startswith("/*", i):
            end = script.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if ch == "$":
            tag_end = script.find("$", i + 1)
            tag = script[i : tag_end + 1] if tag_end > 0 else ""
            if tag and (tag == "$$" or tag[1:-1].isidentifier()):
                body_end = script.find(tag, tag_end + 1)
                stop = n if body_end < 0 else body_end + len(tag)
                current.append(script[i:stop])
                i = stop
                continue
        if ch == ";":
            statement = "".join(current).strip()
            if statement:
                statements.append(statement)
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    tail = "".join(current).strip()
    if tail:
        statements.append(tail)
    return statements
