"""Paging parameters, bounded on every route: an offset past what any list holds, or a limit past a page,
is a 422 naming the parameter (an unbounded integer reached SQLite as an OverflowError: a 500)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

#: The largest offset any list route accepts (as /alerts has since it was written).
MAX_OFFSET = 1_000_000

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description=f"Items to skip (at most {MAX_OFFSET})")]

