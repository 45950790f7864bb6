"""Window assignment and windowed counts used by the anomaly detectors."""

from __future__ import annotations

import pytest

from models.anomaly.windows import add_count, add_distinct, check_window, hopping_starts, live, remember, tumbling_start


def test_tumbling_window_holds_its_start_but_not_its_end() -> None:
    assert tumbling_start(120.0, 60) == 120
    assert tumbling_start(179.9, 60) == 120
    assert tumbling_start(180.0, 60) == 180


def test_hopping_windows_are_every_window_that_contains_the_time() -> None:
    starts = hopping_starts(1000.0, 600, 120)
    assert starts == [480, 600, 720, 840, 960]
    assert all(s <= 1000.0 < s + 600 for s in starts)
    assert 360 + 600 <= 1000.0  # the window before the oldest has already ended


def test_hopping_with_step_equal_to_size_is_tumbling() -> None:
    assert hopping_starts(179.0, 60, 60) == [tumbling_start(179.0, 60)]


def test_window_size_must_be_a_multiple_of_its_step() -> None:
    with pytest.raises(ValueError):
        check_window(600, 70)


def test_counts_expire_when_their_window_ends() -> None:
    windows = add_count({}, hopping_starts(100.0, 60, 30))  # windows 60 and 90
    windows = add_count(windows, hopping_starts(130.0, 60, 30))  # windows 90 and 120
    assert windows == {"60": 1.0, "90": 2.0, "120": 1.0}
    assert live(windows, 130.0, 60) == {"90": 2.0, "120": 1.0}


def test_distinct_values_are_counted_once_and_capped_without_mutating_input() -> None:
    before = {"0": ["a"]}  # as a JSON round trip gives it back
    after = add_distinct(before, [0], "a", cap=3)
    after = add_distinct(after, [0], "b", cap=3)
    after = add_distinct(after, [0], "c", cap=3)
    after = add_distinct(after, [0], "d", cap=3)
    assert after == {"0": ("a", "b", "c")}
    assert before == {"0": ["a"]}


def test_live_drops_only_ended_windows_and_never_mutates() -> None:
    windows = {"60": 1.0, "90": 2.0}
    assert live(windows, 100.0, 60) is windows  # nothing ended: no copy
    assert live(windows, 120.0, 60) == {"90": 2.0} and windows == {"60": 1.0, "90": 2.0}


def test_remember_keeps_the_newest_rows() -> None:
    recent: tuple = ()
    for n in range(7):
        recent = remember(recent, (n,), keep=5)
    assert recent == ((2,), (3,), (4,), (5,), (6,))
