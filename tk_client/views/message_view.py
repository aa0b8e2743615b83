"""The message list: a read-only Text widget that draws one conversation.

Consecutive messages of one sender within a few minutes share a heading (name
and time), days are separated, own messages have a tinted background, messages
not yet stored say so (sending / waiting for the connection / not sent), and
notices from the client are grey. Scrolling to the top asks for older history
through ``on_top``.
"""

from __future__ import annotations

import datetime as dt
import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from ..model import ChatMessage, Conversation, MessageState
from . import theme

GROUP_SECONDS = 5 * 60  # messages of one sender closer than this share a heading


def day_label(day: dt.date, today: dt.date) -> str:
    if day == today:
        return "Today"
    if day == today - dt.timedelta(days=1):
        return "Yesterday"
    return f"{day:%A}, {day.day} {day:%B %Y}"


def displayable(text: str) -> str:
    """Characters outside the Basic Multilingual Plane as U+FFFD.

    Tk 8.6 on X11 cannot draw them and some colour-emoji fonts make it fail
    outright, so an emoji in a message must not be able to break the window.
    """
    return "".join(c if ord(c) <= 0xFFFF else "\ufffd" for c in text)


class MessageView(ttk.Frame):
    """Draws a :class:`Conversation`; ``on_top`` is called when the user reaches the top."""

    def __init__(self, master: tk.Misc, fonts: theme.Fonts, on_top: Callable[[], None]) -> None:
        super().__init__(master, style="Surface.TFrame")
        self.fonts = fonts
        self.on_top = on_top
        self.conversation: Conversation | None = None
        self.me: str | None = None
        self.online = True
        self._starts: list[int] = []  # first text line of each message, in conversation order
        self._last_group: tuple[str, dt.datetime | None, dt.date | None] | None = None
        self.text = tk.Text(
            self,
            wrap="word",
            state="disabled",
            relief="flat",
            borderwidth=0,
            highlightthickness=0,
            background=theme.SURFACE,
            foreground=theme.TEXT,
            font=fonts.body,
            padx=18,
            pady=10,
            cursor="arrow",
            spacing1=1,
            spacing3=1,
            selectbackground="#cfe0ff",
            inactiveselectbackground="#dfe9ff",
        )
        self.scrollbar = ttk.Scrollbar(self, orient="vertical", command=self.text.yview)
        self.text.configure(yscrollcommand=self._on_scroll)  # type: ignore[arg-type]  # Tk passes strings
        self.scrollbar.pack(side="right", fill="y")
        self.text.pack(side="left", fill="both", expand=True)
        self._configure_tags()
        # Read-only, but text can still be selected and copied.
        self.text.bind("<Control-c>", lambda e: self.text.event_generate("<<Copy>>"))

    def _configure_tags(self) -> None:
        t, f = self.text, self.fonts
        t.tag_configure("top", foreground=theme.FAINT, font=f.small, justify="center", spacing3=8)
        t.tag_configure(
            "day",
            foreground=theme.MUTED,
            font=f.small_bold,
            justify="center",
            spacing1=12,
            spacing3=6,
        )
        t.tag_configure("sender", font=f.sender, spacing1=10)
        t.tag_configure("time", foreground=theme.FAINT, font=f.small)
        t.tag_configure("body", lmargin1=0, lmargin2=0, rmargin=8)
        t.tag_configure("own", background=theme.OWN_BACKGROUND, lmargin1=0, lmargin2=0)
        t.tag_configure("private", foreground=theme.TEXT)
        t.tag_configure("pending", foreground=theme.MUTED, font=f.body_italic)
        # An encrypted message this device cannot read (yet): its reason, in grey (4.9).
        t.tag_configure("unreadable", foreground=theme.FAINT, font=f.body_italic)
        t.tag_configure("state", foreground=theme.FAINT, font=f.small)
        t.tag_configure("failed", foreground=theme.DANGER, font=f.small)
        t.tag_configure(
            "notice",
            foreground=theme.MUTED,
            font=f.body_italic,
            lmargin1=12,
            lmargin2=12,
            spacing1=6,
            spacing3=6,
        )
        t.tag_configure("notice-error", foreground=theme.DANGER)
        t.tag_configure(
            "notice-table", font=f.mono, foreground=theme.MUTED, lmargin1=12, lmargin2=12
        )
        for colour in theme.SENDER_COLOURS:
            t.tag_configure(f"colour{colour}", foreground=colour)
        t.tag_configure("me", foreground=theme.ACCENT)

    # --- drawing ------------------------------------------------------------------------------

    def show(
        self, conversation: Conversation, me: str | None, *, keep_anchor: int | None = None
    ) -> None:
        """Draw ``conversation`` from scratch.

        ``keep_anchor``: keep the message at the top of the view in place, ``keep_anchor``
        messages further down (that many were inserted above it); None: scroll to the end.
        """
        anchor = self._anchor() if keep_anchor is not None else None
        at_end = self._at_end()
        self.conversation, self.me = conversation, me
        t = self.text
        t.configure(state="normal")
        t.delete("1.0", "end")
        self._starts = []
        self._last_group = None
        self._draw_top(conversation)
        for message in conversation.messages:
            self._draw(message)
        t.configure(state="disabled")
        if anchor is not None and not at_end:
            index, offset = anchor
            index = min(index + (keep_anchor or 0), len(self._starts) - 1)
            if index >= 0:
                t.yview(f"{self._starts[index] + offset}.0")
                return
        t.see("end")

    def append(self, message: ChatMessage) -> None:
        """Draw one more message at the end, following it if the view was at the end."""
        if self.conversation is None:
            return
        at_end = self._at_end()
        self.text.configure(state="normal")
        self._draw(message)
        self.text.configure(state="disabled")
        if at_end:
            self.text.see("end")

    def refresh_top(self) -> None:
        """Redraw the first line (loading / more above / beginning of the conversation)."""
        if self.conversation is None:
            return
        self.text.configure(state="normal")
        self.text.delete("1.0", "2.0")
        self.text.insert("1.0", self._top_words(self.conversation) + "\n", ("top",))
        self.text.configure(state="disabled")

    def _draw_top(self, conversation: Conversation) -> None:
        self.text.insert("end", self._top_words(conversation) + "\n", ("top",))

    @staticmethod
    def _top_words(conversation: Conversation) -> str:
        """The first line is always exactly one line, so redrawing it moves nothing."""
        if conversation.loading:
            return "Loading older messages..."
        if conversation.has_more:
            return "Scroll up for older messages"
        if conversation.has_more is False:
            if conversation.key.kind == "room":
                return f"This is the beginning of #{conversation.key.name}."
            return f"This is the beginning of your conversation with {conversation.key.name}."
        return ""

    def _draw(self, message: ChatMessage) -> None:
        t = self.text
        self._starts.append(int(t.index("end-1c").split(".")[0]))
        if message.notice:
            self._last_group = None
            tags: tuple[str, ...] = ("notice",)
            if "\n" in message.text:
                tags = ("notice-table",)
            if message.level == "error":
                tags += ("notice-error",)
            t.insert("end", displayable(message.text) + "\n", tags)
            return
        when = message.time
        day = when.date() if when else None
        if day is not None and (self._last_group is None or self._last_group[2] != day):
            t.insert("end", day_label(day, dt.datetime.now().astimezone().date()) + "\n", ("day",))
            self._last_group = None
        group = self._last_group
        same_group = (
            group is not None
            and group[0] == message.sender
            and (
                when is None
                or group[1] is None
                or (when - group[1]).total_seconds() < GROUP_SECONDS
            )
        )
        extra: tuple[str, ...] = ("own",) if message.own else ()
        if not same_group:
            colour = "me" if message.own else f"colour{theme.sender_colour(message.sender)}"
            t.insert("end", displayable(message.sender), ("sender", colour, *extra))
            stamp = f"   {when:%H:%M}" if when else ""
            t.insert("end", stamp + "\n", ("time", *extra))
        self._last_group = (message.sender, when or (group[1] if group else None), day)
        body: tuple[str, ...] = ("body", *extra)
        if message.state in (MessageState.QUEUED, MessageState.SENDING):
            body += ("pending",)
        if message.unreadable:
            body += ("unreadable",)
        t.insert("end", displayable(message.text), body)
        if message.state is MessageState.QUEUED:
            note = "  waiting for the connection" if not self.online else "  sending..."
            t.insert("end", note, ("state", *extra))
        elif message.state is MessageState.SENDING:
            t.insert("end", "  sending...", ("state", *extra))
        elif message.state is MessageState.FAILED:
            t.insert(
                "end", f"  \u26a0 not sent: {message.error or 'unknown reason'}", ("failed", *extra)
            )
        t.insert("end", "\n", body)

    # --- scrolling ----------------------------------------------------------------------------

    def _at_end(self) -> bool:
        return self.text.yview()[1] >= 0.999

    def _anchor(self) -> tuple[int, int] | None:
        """(message index, line offset) of what is at the top of the view."""
        if not self._starts:
            return None
        top = int(self.text.index("@0,0").split(".")[0])
        index = 0
        for i, start in enumerate(self._starts):
            if start <= top:
                index = i
            else:
                break
        return index, max(0, top - self._starts[index])

    def _on_scroll(self, first: str, last: str) -> None:
        self.scrollbar.set(first, last)
        # The scrollbar shows only when there is something to scroll (a wider text cannot
        # need it more, so this never flickers).
        needed = float(first) > 0.0 or float(last) < 1.0
        if needed and not self.scrollbar.winfo_ismapped():
            self.scrollbar.pack(side="right", fill="y", before=self.text)
        elif not needed and self.scrollbar.winfo_ismapped():
            self.scrollbar.pack_forget()
        conversation = self.conversation
        if (
            conversation is not None
            and float(first) <= 0.0
            and conversation.has_more
            and not conversation.loading
        ):
            self.after_idle(self.on_top)
