"""``webhook_receiver.bodies.json_depth`` against an independent reference: the nesting
of the Python value the JSON encodes (lists and dicts count a level; strings full of
brackets and escapes count none). No stack needed: a pure function, both backends."""
from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings, strategies as st

from webhook_receiver.bodies import json_depth

# Strings made to look like structure: brackets, quotes and backslashes inside literals.
TRICKY = st.text(alphabet='[]{}"\\:, ax', max_size=8)
VALUES = st.recursive(st.none() | st.booleans() | st.integers() | TRICKY,
                      lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY, inner, max_size=4),
                      max_leaves=60)


def nesting(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(nesting, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(nesting, value.values()), default=0)
    return 0


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_depth_is_the_values_nesting(value: Any) -> None:
    raw = json.dumps(value).encode()
    assert json_depth(raw) == nesting(value)
    assert json_depth(raw, cap=2) == nesting(value) or (nesting(value) > 2 and json_depth(raw, cap=2) > 2)


def test_unpaired_or_crossed_brackets_still_count_as_deep() -> None:
    """What the parser would recurse into before failing is refused all the same."""
    assert json_depth(b"[" * 40) == 40
    assert json_depth(b"{[" * 20 + b"}]" * 20) >= 20
    assert json_depth(b"[" * 100 + b"]" * 100, cap=32) > 32
