import json

import pytest
from hypothesis import given, strategies as st

from sneakers23.serve import phoenix


def test_frames_round_trip():
    message = phoenix.decode('["1","2","product:1","phx_join",{"a":1}]')
    assert message == phoenix.Message("1", "2", "product:1", "phx_join", {"a": 1})
    assert json.loads(phoenix.reply(message, "ok", {"x": 1})) == [
        "1", "2", "product:1", "phx_reply", {"status": "ok", "response": {"x": 1}},
    ]
    assert json.loads(phoenix.push("product:1", "released", {"size_html": ""})) == [
        None, None, "product:1", "released", {"size_html": ""},
    ]


@pytest.mark.parametrize(
    ("text", "code"),
    [("not json", phoenix.CLOSE_INVALID), ("{}", phoenix.CLOSE_INVALID), ('["1","2","t","e"]', phoenix.CLOSE_INVALID),
     ('["1","2","t","e",{},6]', phoenix.CLOSE_INVALID), ('[1,"2","t","e",{}]', phoenix.CLOSE_INVALID),
     ('["1","2",3,"e",{}]', phoenix.CLOSE_INVALID), ("x" * (phoenix.MAX_FRAME_CHARS + 1), phoenix.CLOSE_TOO_BIG)],
)
def test_frames_that_cannot_be_answered_close_the_socket(text, code):
    with pytest.raises(phoenix.ProtocolError) as raised:
        phoenix.decode(text)
    assert raised.value.code == code


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text() | st.integers(), inner, max_size=4),
    max_leaves=12)


@given(topic=st.text(max_size=phoenix.MAX_TOPIC_CHARS), payload=_JSON)
def test_a_frame_reads_back_as_the_standard_librarys_would(topic, payload):
    # (orjson writes the frames; what it refuses, lone surrogates and dict keys that are not
    # strings among them, the standard library writes: any topic a client sends is echoed back)
    written = phoenix.push(topic, "place", payload)
    assert json.loads(written) == json.loads(json.dumps([None, None, topic, "place", payload]))


def test_a_queues_place_is_written_as_the_standard_library_writes_it_and_what_orjson_refuses_is_written_too():
    view = {"entry": "Zk3p", "stage": "queue", "position": 4711, "ahead": 4710, "wait_s": 2355.5, "sold_out": False}
    assert phoenix.push("queue:2", "place", view) == json.dumps([None, None, "queue:2", "place", view],
                                                                separators=(",", ":"))
    for topic, payload in (("queue:\ud800", {}), ("product:1", {1: "one"}), ("product:1", {"n": 2 ** 70})):
        written = json.loads(phoenix.push(topic, "x", payload))
        assert written == [None, None, topic, "x", json.loads(json.dumps(payload))]
