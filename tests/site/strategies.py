"""Hypothesis strategies for site messages, built from the dataclass annotations."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from hypothesis import strategies as st

from frumitcache.site import MESSAGE_TYPES, Message


def for_type(tp: Any) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(tp)
    if origin is types.UnionType or origin is typing.Union:
        return st.one_of([for_type(a) for a in typing.get_args(tp)])
    if origin is tuple:
        return st.lists(for_type(typing.get_args(tp)[0]), max_size=4).map(tuple)
    if tp is type(None):
        return st.none()
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(-(2**63), 2**63 - 1)
    if tp is float:
        return st.floats(allow_nan=False)
    if tp is str:
        return st.text(max_size=24)
    if tp is bytes:
        return st.binary(max_size=40)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return st.builds(tp, **{f.name: for_type(hints[f.name]) for f in dataclasses.fields(tp)})
    raise TypeError(tp)


def messages() -> st.SearchStrategy[Message]:
    return st.one_of([for_type(cls) for cls in MESSAGE_TYPES.values()])


#: Arbitrary msgpack-able values (what a key holder could put in a frame).
wire_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
