"""Timestamps as status fields carry them: RFC 3339 in UTC, to the second (`2025-01-01T12:00:00Z`).

The one formatter and parser of the operator, the local runtime and the trainer (which imports only
`kubetune.api`, `kubetune.data` and `kubetune.constants`, hence here). Standard library only.
"""

from __future__ import annotations

import datetime as dt

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def now_iso(now: dt.datetime | None = None) -> str:
    """`now` (default: the current time) as a status timestamp."""
    return (now or dt.datetime.now(dt.UTC)).strftime(FORMAT)


def parse_time(value: str | None) -> dt.datetime | None:
    """A status timestamp (`Z` or an offset; fractions allowed) as an aware datetime; None for None or ''."""
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
