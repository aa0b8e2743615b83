"""Autobahn's debug log arguments, formatted only for log lines that are emitted.

Autobahn (daphne's WebSocket implementation) computes the arguments of its
``log.debug`` calls before its logger drops them: on every new connection a
``pprint.pformat`` of its configuration (~230 µs of CPU here) and of the
transport details, ~5% of the event loop's time in a burst of handshakes; on
every WebSocket frame received or sent ``hltype`` and two ``hlval`` (~1 µs of
the ~2.5 µs they cost is saved). :func:`skip_autobahn_debug_formatting`, called
by ``chatsite/asgi.py``, rebinds those names in the two modules that use them.
Nothing here touches framing, the opening handshake or any check.
"""

from __future__ import annotations

import pprint
from collections.abc import Callable
from typing import Any

import txaio


class _Deferred:
    """Text computed when formatted: ``render(*args, **kwargs)`` on ``str()`` or ``format()``.

    Stands in for autobahn's ``hltype``/``hlval`` results, which are only ever
    log arguments: a log line that is emitted reads exactly as before, and one
    that is dropped (every debug line, at the default level) costs no formatting.
    """

    __slots__ = ("_args", "_kwargs", "_render")

    def __init__(self, render: Callable[..., str], args: tuple, kwargs: dict[str, Any]) -> None:
        self._render = render
        self._args = args
        self._kwargs = kwargs

    def __str__(self) -> str:
        return self._render(*self._args, **self._kwargs)

    def __repr__(self) -> str:
        return repr(str(self))

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _deferring(render: Callable[..., str]) -> Callable[..., _Deferred]:
    """``render`` made lazy: calling the result only records the arguments."""

    def deferred(*args: Any, **kwargs: Any) -> _Deferred:
        return _Deferred(render, args, kwargs)

    deferred.__name__ = deferred.__qualname__ = f"deferred_{render.__name__}"
    return deferred


def _pformat_when_debugging(obj: Any, *args: Any, **kwargs: Any) -> str:
    """``pprint.pformat`` when autobahn's debug log lines are emitted, else a placeholder.

    Autobahn's loggers (txaio) follow txaio's global level, "info" unless someone
    turns debug on (``txaio.set_global_log_level("debug")``): then the real
    formatting comes back, so nothing is lost from a debug log.
    """
    if txaio.get_global_log_level() in ("debug", "trace"):  # type: ignore[attr-defined]  # set by txaio.use_twisted()
        return pprint.pformat(obj, *args, **kwargs)
    return "(not formatted: autobahn debug logging is off)"


def skip_autobahn_debug_formatting() -> None:
    """Make autobahn format its log arguments only for log lines that are emitted.

    Autobahn computes the arguments of its ``log.debug`` calls before the logger
    drops them: on every new connection ``pprint.pformat`` of its configuration
    and transport details (~5% of the event loop's time in a burst of
    handshakes), and on every WebSocket frame received or sent ``hltype`` and
    two ``hlval`` (~10 µs a frame on this machine, against ~100 µs of server CPU
    per delivered message). This rebinds those module-level names in
    ``autobahn.websocket.protocol`` and ``autobahn.twisted.websocket``:

    - ``hltype``/``hlval`` to :class:`_Deferred` wrappers. Their only uses there
      are log arguments (debug lines, and one ``log.error`` that still reads the
      same), so emitted lines are unchanged.
    - ``pformat`` to :func:`_pformat_when_debugging`. Its uses are two
      ``log.debug`` arguments and ``Timings.__str__`` (a debugging aid, off
      unless a protocol enables ``trackTimings``).

    No framing, handshake or security check depends on these names. A name that
    a new autobahn no longer binds to the original function is left alone.
    """
    from autobahn import util
    from autobahn.twisted import websocket as twisted_websocket
    from autobahn.websocket import protocol

    replacements = {
        "hltype": (util.hltype, _deferring(util.hltype)),
        "hlval": (util.hlval, _deferring(util.hlval)),
        "pformat": (pprint.pformat, _pformat_when_debugging),
    }
    for module in (protocol, twisted_websocket):
        for name, (original, replacement) in replacements.items():
            if getattr(module, name, None) is original:
                setattr(module, name, replacement)
