"""The Tk widgets of the desktop client, and nothing else.

They draw what :class:`tk_client.controller.ChatController` holds and pass what the
user does back to it; no protocol, no sockets, no threads here.
"""
