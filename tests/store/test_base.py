"""The store module's own helpers: JSON text in and out, Encoded values."""

from __future__ import annotations

import dataclasses

import pytest

from rtcontrol.store import Encoded
from rtcontrol.store.base import dumps, loads


def test_dumps_is_compact_and_keeps_unicode() -> None:
    assert dumps({"a": [1, 2], "é": None}) == '{"a":[1,2],"é":null}'


def test_dumps_returns_encoded_text_unchanged() -> None:
    text = '{"seq":1, "spaced": true}'  # not what dumps would make: not re-encoded
    assert dumps(Encoded(text)) is text
    assert loads(dumps(Encoded(text))) == {"seq": 1, "spaced": True}


def test_encoded_is_frozen_and_compares_by_text() -> None:
    value = Encoded("[1]")
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.text = "[2]"  # type: ignore[misc]
    assert value == Encoded("[1]")
    assert hash(value) == hash(Encoded("[1]"))


def test_encoded_nested_in_a_value_is_refused() -> None:
    """Only a whole value may be pre-encoded; a nested one is not JSON."""
    with pytest.raises(TypeError):
        dumps({"record": Encoded("{}")})
