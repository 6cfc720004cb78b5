"""The reset policy of stored read positions (edgestream.core.offsets), without a broker."""

from __future__ import annotations

import pytest

from edgestream.core import offsets
from edgestream.edge import topic_guard
from tests.support.doctests import run_doctests


@pytest.mark.parametrize(
    ("position", "start", "end", "recreated", "reason"),
    [
        (0, 0, 0, False, None),  # nothing read yet, empty log
        (50, 0, 50, False, None),  # at the end: the next record
        (51, 0, 50, False, "beyond_log_end"),  # the log is shorter than what was read
        (9, 10, 50, False, "before_log_start"),  # retention deleted unread records
        (10, 0, 50, True, "topic_recreated"),  # a new topic id wins over the offsets
    ],
)
def test_reset_reason(position, start, end, recreated, reason) -> None:
    assert offsets.reset_reason(position, start, end, recreated) == reason


@pytest.mark.parametrize("module", [offsets, topic_guard])
def test_docstring_examples(module) -> None:
    run_doctests(module)
