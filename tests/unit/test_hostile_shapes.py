"""Request bodies of the wrong JSON shape are a clear 400 before the engine sees them (found by stress/)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from berth.api import shapes
from berth.errors import InvalidParameter

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=12), c, max_size=3),
                           max_leaves=10)


@pytest.mark.parametrize("body, message", [
    ([1], "json: cannot unmarshal array into Go struct field body of type object"),
    ({"NetworkingConfig": [0.0]}, "json: cannot unmarshal array into Go struct field NetworkingConfig of type object"),
    ({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": 80}]}}},
     "json: cannot unmarshal number into Go struct field HostConfig.PortBindings.80/tcp[0].HostPort of type string"),
    ({"Cmd": [1]}, "json: cannot unmarshal array into Go struct field Cmd of type string or array of strings"),
    ({"Labels": {"a": True}}, "json: cannot unmarshal bool into Go struct field Labels.a of type string"),
])
def test_wrong_shapes_are_refused_with_the_field_named(body, message):
    with pytest.raises(InvalidParameter) as err:
        shapes.checked(body, shapes.CONTAINER_CREATE)
    assert str(err.value) == message


def test_null_means_absent_unknown_fields_are_kept_and_a_string_command_is_one_word():
    body = {"HostConfig": None, "Cmd": "ls", "Unknown": [1, {"x": 2}]}
    assert shapes.checked(body, shapes.CONTAINER_CREATE) == {"HostConfig": None, "Cmd": ["ls"], "Unknown": [1, {"x": 2}]}
    assert shapes.checked(None, shapes.CONNECT) == {}


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from([shapes.CONTAINER_CREATE, shapes.NETWORK_CREATE, shapes.CONNECT,
                                     shapes.DISCONNECT, shapes.EXEC_CREATE]))
def test_any_json_is_either_accepted_as_an_object_or_refused_clearly(body, shape):
    try:
        out = shapes.checked(body, shape)
    except InvalidParameter as err:
        assert str(err).startswith("json: cannot unmarshal ") and "\n" not in str(err)
    else:
        assert isinstance(out, dict)
