"""One user-id type (``base.ids``), full match — ``re``'s ``$`` matches before a
trailing newline, which once credited a wallet ``"dave\\n"`` (issue 15, repro 6)."""
from __future__ import annotations

import pytest

from base.ids import USER_ID, USER_ID_MAX, is_user_id


@pytest.mark.parametrize("value", ["dave", "a", "u_1.x:y@z-w", "A" * USER_ID_MAX])
def test_user_ids_of_the_alphabet_pass(value: str) -> None:
    assert is_user_id(value) and USER_ID.match(value)


@pytest.mark.parametrize("value", ["dave\n", "dave\r\n", "\ndave", "", "a b", "dävé", "A" * (USER_ID_MAX + 1),
                                   "dave\x00", None, 5, ["dave"]])
def test_anything_else_fails(value: object) -> None:
    assert not is_user_id(value)
    if isinstance(value, str):
        assert not USER_ID.match(value)
