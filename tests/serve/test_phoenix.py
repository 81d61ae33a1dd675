import json

import pytest

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
