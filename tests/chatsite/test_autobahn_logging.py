"""chatsite.autobahn_logging's rebinding of autobahn's log-argument helpers: no formatting
for log lines that are dropped, the same text for those that are emitted."""

from __future__ import annotations

import pprint

import pytest
import txaio
from autobahn import util
from autobahn.twisted import websocket as twisted_websocket
from autobahn.websocket import protocol


@pytest.fixture(scope="module")
def patched():
    from chatsite import autobahn_logging

    autobahn_logging.skip_autobahn_debug_formatting()
    return autobahn_logging


class _Owner:
    peer = "tcp4:127.0.0.1:40000"

    def sendData(self) -> None:
        pass


def test_both_modules_are_rebound(patched):
    for module in (protocol, twisted_websocket):
        assert module.hltype is not util.hltype
        assert module.hlval is not util.hlval
    assert protocol.pformat is not pprint.pformat


def test_emitted_arguments_read_as_before(patched):
    owner = _Owner()
    line = "{func} sent {data_len} bytes for peer {peer}"
    fields = {"func": owner.sendData, "peer": owner.peer, "data_len": 12}
    before = line.format(
        func=util.hltype(fields["func"]),
        peer=util.hlval(fields["peer"]),
        data_len=util.hlval(fields["data_len"]),
    )
    after = line.format(
        func=protocol.hltype(fields["func"]),
        peer=twisted_websocket.hlval(fields["peer"]),
        data_len=protocol.hlval(fields["data_len"]),
    )
    assert after == before
    assert str(protocol.hlval("x", color="red")) == util.hlval("x", color="red")


def test_pformat_formats_only_when_autobahn_debugs(patched):
    data = [("autoPingTimeout", 20, "WebSocketServerFactory")] * 3
    assert protocol.pformat(data) != pprint.pformat(data)
    level = txaio.get_global_log_level()
    txaio.set_global_log_level("debug")
    try:
        assert protocol.pformat(data) == pprint.pformat(data)
    finally:
        txaio.set_global_log_level(level)


def test_rebinding_twice_changes_nothing(patched):
    bound = (protocol.hltype, protocol.hlval, protocol.pformat)
    patched.skip_autobahn_debug_formatting()
    assert (protocol.hltype, protocol.hlval, protocol.pformat) == bound
