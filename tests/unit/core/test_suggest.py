"""Did-you-mean hints: one helper for every unknown name."""

from __future__ import annotations

from sagepipe.core.suggest import did_you_mean, did_you_mean_among


def test_a_close_name_is_suggested() -> None:
    assert did_you_mean("trian", ["train", "test"]) == " (did you mean train?)"
    assert did_you_mean("zzz", ["train", "test"]) == ""


def test_among_lists_every_option_after_the_hint() -> None:
    assert did_you_mean_among("trian", ["train", "test"], "outputs") == (
        " (did you mean train?); outputs are: train, test"
    )
    assert did_you_mean_among("x", [], "parameters") == "; parameters are: none"
