from chatproto.e2e import canonical_json


def test_canonical_json_sorts_keys_and_drops_spaces() -> None:
    signed = canonical_json({"b": 1, "a": [1, {"d": 2, "c": "x"}]})
    assert signed == b'{"a":[1,{"c":"x","d":2}],"b":1}'


def test_canonical_json_keeps_text_as_utf8() -> None:
    assert canonical_json({"name": "zoë"}) == '{"name":"zoë"}'.encode()
