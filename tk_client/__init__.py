"""The chat clients: desktop (``python -m tk_client``) and terminal (``python -m tk_client.cli``).

The package follows idlelib's split between logic and window:

- :mod:`tk_client.session` -- the network: one WebSocket on a background thread
  around ``chatproto``'s ``ClientConnection`` (handshake, records, login). No tkinter.
  :mod:`tk_client.events` holds what it reports, :mod:`tk_client.transport` the
  WebSocket underneath, :mod:`tk_client.endings` what to do when a connection ends
  (a pure table), :mod:`tk_client.outbox` the requests on their way (nothing typed is lost),
  :mod:`tk_client.sign_in` how it logs in again (a password kept in memory, or a
  remembered device's token).
- :mod:`tk_client.chat_state` -- the state of the conversations (rooms, private
  chats, users, unread counts), kept from the session's events;
  :mod:`tk_client.controller` -- what the user's input means, on top of it;
  :mod:`tk_client.commands` -- the typed commands (``/pm``, ``/file``...), one
  table for both clients; :mod:`tk_client.model` -- messages off the wire, in order;
  :mod:`tk_client.account` -- the user's own account (password, two-factor login,
  devices): its requests and the events they end in. No tkinter.
- :mod:`tk_client.completion` -- Tab completion, Tk-free like idlelib's autocomplete.
- :mod:`tk_client.known_servers` -- the pinned server keys (trust on first use);
  :mod:`tk_client.address` -- server addresses; :mod:`tk_client.config` -- the
  user's config folder and remembered settings; :mod:`tk_client.device_tokens` --
  the tokens of remembered devices (mode 0600), per server key and user.
- :mod:`tk_client.files` -- file transfers of a session (a worker thread each,
  streaming, verified files; the threading rule is in its manager). No tkinter.
- :mod:`tk_client.views` -- the Tk widgets only; :mod:`tk_client.gui` wires them up.
- :mod:`tk_client.cli` -- the same session and controller in a terminal: the
  arguments there, the loop in :mod:`tk_client.terminal_client`, its printing in
  :mod:`tk_client.terminal_view` and :mod:`tk_client.terminal_lines`, its questions
  about offered files in :mod:`tk_client.terminal_offers`, its input (read line by
  line on order, passwords without echo) in :mod:`tk_client.terminal_input`, the
  account commands' questions and results in :mod:`tk_client.terminal_account`, with
  the QR code of ``/2fa on`` drawn by :mod:`tk_client.terminal_qr`.

Threads meet in exactly one place: the session's thread and the file transfers'
workers put events on a ``queue.Queue`` that the user interface drains (Tk with
``after()``, the terminal client in its main loop).
"""
