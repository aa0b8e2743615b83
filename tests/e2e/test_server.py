"""The real server's transport and operations: origin check, compression, logs, restarts."""

from __future__ import annotations

import re
import time
import urllib.request

import pytest
import websocket

from tests.protocol_client.sync import connect, open_socket

pytestmark = pytest.mark.slow  # starts daphne processes


def test_websocket_without_origin_is_refused_with_403(live_server):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        open_socket(live_server.url, None)
    assert refused.value.status_code == 403


def test_websocket_from_a_foreign_origin_is_refused_with_403(live_server):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        open_socket(live_server.url, "https://evil.example")
    assert refused.value.status_code == 403


def test_permessage_deflate_is_not_negotiated(live_server):
    ws = open_socket(
        live_server.url,
        live_server.origin,
        header=["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"],
    )
    try:
        assert "sec-websocket-extensions" not in {k.lower() for k in ws.getheaders()}
    finally:
        ws.close()


def test_admin_is_served_over_http(live_server):
    with urllib.request.urlopen(f"{live_server.http_url}/admin/login/", timeout=10) as response:  # noqa: S310
        assert response.status == 200
        assert b"Chat administration" in response.read()


def test_logs_name_session_user_and_address_but_no_secrets(live_server):
    live_server.create_user("logan", "hunter2-secret-password")
    with connect(live_server.url, live_server.origin, live_server.fingerprint) as client:
        client.login("logan", "hunter2-secret-password")
        client.request({"type": "send", "room": "lobby", "text": "a very private body text"})
        session_id = client.conn.keys.session_id
    pattern = rf"session {session_id} ended: user logan from 127\.0\.0\.1"
    for _ in range(100):  # the end line is written when the server has handled the close
        if re.search(pattern, live_server.log()):
            break
        time.sleep(0.1)
    log = live_server.log()
    assert re.search(rf"session {session_id} started: user logan from 127\.0\.0\.1", log)
    assert re.search(pattern, log)
    assert "hunter2" not in log
    assert "a very private body text" not in log


def test_server_restarts_on_the_same_port_and_keeps_its_key_and_accounts(live_server):
    live_server.create_user("restart", "pw")
    port, fingerprint = live_server.port, live_server.fingerprint
    live_server.stop()
    live_server.start()
    assert live_server.port == port
    with connect(live_server.url, live_server.origin, expected_fingerprint=fingerprint) as client:
        assert client.login("restart", "pw")["user"] == {"username": "restart"}


def test_a_test_server_moves_to_another_port_when_its_port_was_taken(live_server):
    import socket

    from tests.live_server import LiveServer

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        server = LiveServer(live_server.data_dir, live_server.env, live_server.fingerprint, taken)
        try:
            server.start()
            assert server.port != taken
            with connect(server.url, server.origin, expected_fingerprint=server.fingerprint):
                pass  # the handshake went through on the new port
        finally:
            server.stop()
