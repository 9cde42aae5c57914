"""One duration format (issue 17 point 3): every duration the tool prints is accepted back as input."""

from __future__ import annotations

import pytest

from recovery.units import format_duration, parse_duration, span

SECONDS = [0, 0.4, 1, 9.96, 59.6, 60, 61, 119.6, 291, 479.6, 3599.9, 3600, 5400, 86399, 93600, 7 * 86400 + 5]


@pytest.mark.parametrize("seconds", SECONDS)
def test_every_span_reads_back_to_within_its_last_unit(seconds):
    text = span(seconds)
    back = parse_duration(text)
    last_unit = 1 if seconds < 3600 else 60 if seconds < 86400 else 3600
    assert abs(seconds - back) < last_unit, (seconds, text, back)


@pytest.mark.parametrize("seconds", SECONDS)
def test_every_span_with_decimals_and_every_config_duration_reads_back(seconds):
    assert abs(parse_duration(span(seconds, decimals=True)) - seconds) < 60
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text, seconds",
    [("1h30m", 5400), ("4m51s", 291), ("1d02h", 93600), ("2.1s", 2.1), ("1m 30s", 90), ("1s500ms", 1.5)],
)
def test_combined_durations_are_read(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["30s1m", "1h1h", "1h30", "5m s"])
def test_combined_durations_go_from_the_largest_unit_down_each_once(text):
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


def test_no_duration_is_printed_as_sixty_of_a_unit():
    assert [span(59.6), span(479.6), span(3599.9), span(59.96, decimals=True)] == ["1m00s", "8m00s", "1h00m", "1m00s"]
