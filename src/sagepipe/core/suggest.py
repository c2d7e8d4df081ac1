"""Did-you-mean hints for names that are close to a known one."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """`` (did you mean a, b?)`` naming up to three close options, or ``""`` when none is close.

    Example:
        ``f"no such step{did_you_mean('trian', ['train', 'test'])}"`` reads
        ``no such step (did you mean train?)``.
    """
    close = difflib.get_close_matches(name, sorted(set(options)), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


__all__ = ["did_you_mean"]
