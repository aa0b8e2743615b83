"""chatsite.listening: the pacing's pause of daphne's listening ports on Twisted's reactor."""

from __future__ import annotations

import sys

from twisted.internet.protocol import Factory
from twisted.internet.tcp import Port

from chatsite.listening import ListeningPorts


class Reactor:
    """The reactor's reader set, as far as a port's pause and resume use it."""

    def __init__(self) -> None:
        self.readers: list[object] = []
        self.walks = 0

    def getReaders(self) -> list[object]:  # Twisted's names
        self.walks += 1
        return list(self.readers)

    def addReader(self, reader: object) -> None:
        self.readers.append(reader)

    def removeReader(self, reader: object) -> None:
        self.readers.remove(reader)


def listening_port(reactor: Reactor) -> Port:
    port = Port(0, Factory(), reactor=reactor)
    port.connected = True  # as after startListening, without a socket
    port.startReading()
    return port


def test_pause_stops_reading_the_listening_ports_and_resume_restores_them(monkeypatch):
    reactor = Reactor()
    other = object()  # a connection's reader: left alone
    reactor.readers.append(other)
    port = listening_port(reactor)
    monkeypatch.setitem(sys.modules, "twisted.internet.reactor", reactor)
    resume = ListeningPorts().pause()
    assert reactor.readers == [other]
    resume()
    assert reactor.readers == [other, port]


def test_a_port_closed_while_paused_stays_closed(monkeypatch):
    reactor = Reactor()
    port = listening_port(reactor)
    monkeypatch.setitem(sys.modules, "twisted.internet.reactor", reactor)
    resume = ListeningPorts().pause()
    port.connected = False
    resume()
    assert reactor.readers == []


def test_without_a_reactor_nothing_is_paused(monkeypatch):
    monkeypatch.delitem(sys.modules, "twisted.internet.reactor", raising=False)
    ListeningPorts().pause()()  # nothing to pause, nothing to resume; no reactor installed
    assert "twisted.internet.reactor" not in sys.modules


def test_the_ports_are_found_once_not_among_every_connection_at_each_pause(monkeypatch):
    reactor = Reactor()
    reactor.readers += [object() for _ in range(100)]  # the sessions' connections
    port = listening_port(reactor)
    monkeypatch.setitem(sys.modules, "twisted.internet.reactor", reactor)
    ports = ListeningPorts()
    for _ in range(5):
        resume = ports.pause()
        assert port not in reactor.readers
        resume()
        assert port in reactor.readers
    assert reactor.walks == 1
