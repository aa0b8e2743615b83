"""The two lists beside the messages: conversations (left, dark) and users (right)."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from ..controller import ChatController
from ..model import ConversationKey, pm_key, room_key
from ..presence import Status, UsersChange
from . import theme
from .tkutil import release_images
from .verify import lock_image

ONLINE = "\u25cf"  # ●
OFFLINE = "\u25cb"  # ○


class ConversationList(ttk.Frame):
    """Rooms, private rooms and private chats with unread counts; other rooms to join.

    ``on_select(key)`` when the user picks a conversation; ``on_join(room)`` when
    they open a public room they are not in.
    """

    def __init__(
        self,
        master: tk.Misc,
        fonts: theme.Fonts,
        on_select: Callable[[ConversationKey], None],
        on_join: Callable[[str], None],
    ) -> None:
        super().__init__(master, style="Sidebar.TFrame", width=230)
        self.on_select = on_select
        self.on_join = on_join
        self._keys: dict[str, ConversationKey] = {}
        self._joinable: dict[str, str] = {}
        self._updating = False
        self.server_label = ttk.Label(self, text="", style="Sidebar.TLabel")
        self.server_label.pack(anchor="w", padx=16, pady=(14, 0))
        self.user_label = ttk.Label(self, text="", style="SidebarSub.TLabel")
        self.user_label.pack(anchor="w", padx=16, pady=(0, 10))
        self.tree = ttk.Treeview(
            self, style="Sidebar.Treeview", show="tree", columns=("unread",), selectmode="browse"
        )
        self.tree.column("#0", width=170, stretch=True)
        self.tree.column("unread", width=44, anchor="e", stretch=False)
        self.tree.tag_configure("section", foreground=theme.SIDEBAR_MUTED, font=fonts.small_bold)
        self.tree.tag_configure("unread", foreground=theme.SIDEBAR_UNREAD, font=fonts.list_bold)
        self.tree.tag_configure("joinable", foreground=theme.SIDEBAR_MUTED)
        self.tree.pack(fill="both", expand=True, padx=(6, 0), pady=(0, 8))
        # End-to-end conversations (private rooms and chats) carry a small lock (4.1).
        self._lock = lock_image(self, theme.SIDEBAR_MUTED)
        self.tree.bind("<<TreeviewSelect>>", self._selected)
        self.tree.bind("<Double-1>", self._activated)
        self.tree.bind("<Return>", self._activated)

    def destroy(self) -> None:
        super().destroy()
        release_images(self._lock)

    def update_from(self, controller: ChatController) -> None:
        """Rebuild the list from the controller's rooms and conversations."""
        self._updating = True
        try:
            self.tree.delete(*self.tree.get_children())
            self._keys.clear()
            self._joinable.clear()
            me = controller.username or ""
            self.user_label.configure(text=f"{ONLINE} {me}" if me else "")
            self.server_label.configure(text=controller.server_name or "Chat")
            joined = controller.joined_rooms()
            public = [r for r in joined if not r.private]
            private = [r for r in joined if r.private]
            self._section("rooms", "ROOMS")
            for room in public:
                self._item("rooms", room_key(room.name), f"#  {room.name}", controller)
            if private:
                self._section("private", "PRIVATE ROOMS")
                for room in private:
                    self._item(
                        "private",
                        room_key(room.name),
                        f"\u25c6  {room.name}",
                        controller,
                        lock=True,
                    )
            self._section("chats", "DIRECT MESSAGES")
            for key in controller.private_chats():
                dot = ONLINE if key.name in controller.online else OFFLINE
                self._item("chats", key, f"{dot}  {key.name}", controller, lock=True)
            others = controller.other_rooms()
            if others:
                self._section("others", "OTHER ROOMS")
                for room in others:
                    iid = f"join:{room.name}"
                    self._joinable[iid] = room.name
                    self.tree.insert(
                        "others", "end", iid=iid, text=f"#  {room.name}", tags=("joinable",)
                    )
            current = self._iid(controller.current)
            if self.tree.exists(current):
                self.tree.selection_set(current)
                self.tree.see(current)
        finally:
            self._updating = False

    def presence_changed(self, change: UsersChange, controller: ChatController) -> None:
        """The dots of the private chats with the users in ``change``; nothing else moves."""
        for user in change.moved:
            iid = self._iid(pm_key(user))
            if self.tree.exists(iid):
                dot = ONLINE if user in controller.online else OFFLINE
                self.tree.item(iid, text=f"{dot}  {user}")

    def _section(self, iid: str, title: str) -> None:
        self.tree.insert("", "end", iid=iid, text=title, open=True, tags=("section",))

    @staticmethod
    def _iid(key: ConversationKey) -> str:
        return f"{key.kind}:{key.name}"

    def _item(
        self,
        parent: str,
        key: ConversationKey,
        text: str,
        controller: ChatController,
        *,
        lock: bool = False,
    ) -> None:
        conversation = controller.conversations.get(key)
        unread = conversation.unread if conversation else 0
        iid = self._iid(key)
        self._keys[iid] = key
        self.tree.insert(
            parent,
            "end",
            iid=iid,
            text=text,
            values=(str(unread) if unread else "",),
            tags=("unread",) if unread else (),
            image=self._lock if lock else "",
        )

    def _selected(self, event: object = None) -> None:
        if self._updating:
            return
        selection = self.tree.selection()
        if selection and selection[0] in self._keys:
            self.on_select(self._keys[selection[0]])

    def _activated(self, event: object = None) -> None:
        selection = self.tree.selection()
        if selection and selection[0] in self._joinable:
            self.on_join(self._joinable[selection[0]])


def _mix(colour: str, background: str, amount: float) -> str:
    """``amount`` of ``colour`` over ``background`` (Tk images have no partial transparency)."""
    c = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    b = [int(background[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(
        f"{round(x * amount + y * (1 - amount)):02x}" for x, y in zip(c, b, strict=True)
    )


def dot_image(
    master: tk.Misc, colour: str, background: str, *, hollow: bool = False, size: int = 10
) -> tk.PhotoImage:
    """A small anti-aliased filled (or ring) circle, drawn pixel by pixel."""
    image = tk.PhotoImage(master=master, width=size + 4, height=size)
    centre = (size - 1) / 2
    outer, inner = size / 2, size / 2 - 1.6
    for y in range(size):
        for x in range(size):
            distance = ((x - centre) ** 2 + (y - centre) ** 2) ** 0.5
            amount = min(1.0, max(0.0, outer - distance))  # fade over the last pixel
            if hollow:
                amount = min(amount, min(1.0, max(0.0, distance - inner)))
            if amount > 0.05:
                image.put(_mix(colour, background, amount), (x, y))
    return image


class UserList(ttk.Frame):
    """Everyone, online first; double-click calls ``on_open(username)``."""

    def __init__(self, master: tk.Misc, fonts: theme.Fonts, on_open: Callable[[str], None]) -> None:
        super().__init__(master, style="Users.TFrame", width=190)
        self.on_open = on_open
        self.tree = ttk.Treeview(self, style="Users.Treeview", show="tree", selectmode="browse")
        self.tree.column("#0", width=180, stretch=True)
        self.tree.tag_configure("section", foreground=theme.MUTED, font=fonts.small_bold)
        self.tree.tag_configure("online", foreground=theme.TEXT)
        self.tree.tag_configure("offline", foreground=theme.FAINT)
        self.tree.pack(fill="both", expand=True, padx=(8, 0), pady=(12, 8))
        self.tree.bind("<Double-1>", self._open)
        self.tree.bind("<Return>", self._open)
        self._users: dict[str, str] = {}
        self._online_dot = dot_image(self, theme.SUCCESS, theme.USERS_BACKGROUND)
        self._offline_dot = dot_image(self, theme.FAINT, theme.USERS_BACKGROUND, hollow=True)
        for section in ("online", "offline"):
            self.tree.insert("", "end", iid=section, open=True, tags=("section",))

    def destroy(self) -> None:
        super().destroy()
        release_images(self._online_dot, self._offline_dot)

    def fill(self, controller: ChatController) -> None:
        """Show the users the controller already knows (the window opens after the snapshot)."""
        everyone = {user: controller.users.status(user) for user in controller.all_users}
        self.apply(UsersChange({u: (None, status) for u, status in everyone.items()}), controller)

    def apply(self, change: UsersChange, controller: ChatController) -> None:
        """Move, add or remove the rows of the users in ``change``; no other row is touched.

        The rows that change are taken out first; then each is put back where the
        controller's order says, lowest position first, so every index counts only
        rows that are already in place. Unchanged rows keep their item, selection
        and place, and a burst of logins costs a few Treeview operations, not the
        whole list.
        """
        online, offline = controller.users_by_presence()
        for user, (before, after) in change.moved.items():
            iid = self._iid(user)
            if not self.tree.exists(iid):
                continue
            if after is None:
                self.tree.delete(iid)
                self._users.pop(iid, None)
            elif before is not after:
                self.tree.detach(iid)
        me = controller.username
        for parent, users in (("online", online), ("offline", offline)):
            status = Status.ONLINE if parent == "online" else Status.OFFLINE
            for index, user in enumerate(users):
                if user not in change.moved or change.moved[user][1] is not status:
                    continue
                iid = self._iid(user)
                if self.tree.exists(iid):
                    self.tree.move(iid, parent, index)
                    self.tree.item(iid, tags=(parent,), image=self._dot(status))
                else:
                    label = f" {user}" + ("  (you)" if user == me else "")
                    self._users[iid] = user
                    self.tree.insert(
                        parent, index, iid=iid, text=label, tags=(parent,), image=self._dot(status)
                    )
        self.tree.item("online", text=f"ONLINE \u2014 {len(online)}")
        self.tree.item("offline", text=f"OFFLINE \u2014 {len(offline)}")

    def _dot(self, status: Status) -> tk.PhotoImage:
        return self._online_dot if status is Status.ONLINE else self._offline_dot

    @staticmethod
    def _iid(user: str) -> str:
        return f"user:{user}"

    def _open(self, event: object = None) -> None:
        selection = self.tree.selection()
        if selection and selection[0] in self._users:
            self.on_open(self._users[selection[0]])
