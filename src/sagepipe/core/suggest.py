"""Did-you-mean hints for names that are close to a known one."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """`` (did you mean a, b?)`` naming up to three close options, or ``""`` when none is close.

    Example:
        ``f"no such step{did_you_mean('trian', ['train', 'test'])}"`` reads
        ``no such step (did you mean train?)``.
    """
    close = difflib.get_close_matches(name, sorted(set(options)), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def did_you_mean_among(name: str, options: Sequence[str], kind: str) -> str:
    """:func:`did_you_mean`, then ``; <kind> are: a, b`` listing ``options`` (or ``none``).

    Example:
        ``f"no output 'trian'{did_you_mean_among('trian', ['train', 'test'], 'outputs')}"``
        reads ``no output 'trian' (did you mean train?); outputs are: train, test``.
    """
    return f"{did_you_mean(name, options)}; {kind} are: {', '.join(options) or 'none'}"


__all__ = ["did_you_mean", "did_you_mean_among"]
