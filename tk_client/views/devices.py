"""The Account window's list of devices: name, last seen, this device, online; Revoke, Refresh."""

from __future__ import annotations

import datetime as dt
import tkinter as tk
from tkinter import ttk

from ..account import DeviceInfo
from . import sections
from .sections import AccountController, Section


def when(stamp: object) -> str:
    """A device's ``created`` or ``last_seen`` (a ``ts`` string or a datetime) in local time."""
    moment: dt.datetime | None = None
    if isinstance(stamp, dt.datetime):
        moment = stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)
    elif isinstance(stamp, str) and stamp:
        for pattern in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
            try:
                moment = dt.datetime.strptime(stamp, pattern).replace(tzinfo=dt.UTC)
                break
            except ValueError:
                continue
        else:
            return stamp
    if moment is None:
        return ""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


class DevicesSection(Section):
    """The remembered devices: name, last seen, this device, online; Revoke and Refresh."""

    COLUMNS = ("name", "last_seen", "this", "online")

    def __init__(self, master: tk.Misc, actions: AccountController) -> None:
        super().__init__(master, "Devices")
        self.actions = actions
        self.devices: dict[str, DeviceInfo] = {}
        self._fetching = False  # "Fetching..." is shown: the list replaces it
        ttk.Label(
            self,
            text="Computers where you ticked \u201cRemember me\u201d. Revoke one you no "
            "longer use or do not know.",
            style="Muted.TLabel",
            wraplength=420,
            justify="left",
        ).grid(row=0, column=0, columnspan=3, sticky="w", pady=(0, 6))
        self.tree = ttk.Treeview(
            self,
            columns=self.COLUMNS,
            show="headings",
            height=4,
            selectmode="browse",
            style="Devices.Treeview",
        )
        for column, heading, width in (
            ("name", "Name", 140),
            ("last_seen", "Last seen", 135),
            ("this", "This device", 90),
            ("online", "Online", 60),
        ):
            self.tree.heading(column, text=heading, anchor="w")
            self.tree.column(column, width=width, anchor="w", stretch=column == "name")
        self.tree.grid(row=1, column=0, columnspan=3, sticky="nsew")
        self.rowconfigure(1, weight=1)
        buttons = ttk.Frame(self, style="Surface.TFrame")
        buttons.grid(row=2, column=0, columnspan=3, sticky="w", pady=(8, 0))
        self.revoke_button = ttk.Button(
            buttons, text="Revoke", style="Danger.TButton", command=self.revoke, state="disabled"
        )
        self.revoke_button.pack(side="left")
        self.refresh_button = ttk.Button(buttons, text="Refresh", command=self.refresh)
        self.refresh_button.pack(side="left", padx=(8, 0))
        self.place_message(3)
        self.tree.bind("<<TreeviewSelect>>", lambda e: self._selection_changed())

    def refresh(self) -> None:
        self.show_info("Fetching the list of devices...")
        self._fetching = True
        self.actions.refresh_devices()

    def listed(self, devices: tuple[DeviceInfo, ...]) -> None:
        selected = self.selected()
        self.tree.delete(*self.tree.get_children())
        self.devices = {d.device: d for d in devices}
        for device in devices:
            self.tree.insert(
                "",
                "end",
                iid=device.device,
                values=(
                    device.name,
                    when(device.last_seen),
                    "this device" if device.current else "",
                    "online" if device.online else "",
                ),
            )
        if selected in self.devices:
            self.tree.selection_set(selected)
        if not devices:
            self.show_info("No device is remembered. Tick \u201cRemember me\u201d when you log in.")
        elif self._fetching:
            self.show_info("")
        self._fetching = False
        self._selection_changed()

    def selected(self) -> str | None:
        selection = self.tree.selection()
        return str(selection[0]) if selection else None

    def _selection_changed(self) -> None:
        self.revoke_button.configure(state="normal" if self.selected() else "disabled")

    def revoke(self) -> None:
        device = self.devices.get(self.selected() or "")
        if device is None:
            return
        if device.current:
            question = (
                f"\u201c{device.name}\u201d is the computer you are using. Revoking it logs you "
                "out here, and you will need your password to log in again. Revoke it?"
            )
        else:
            question = (
                f"Revoke \u201c{device.name}\u201d? It is logged out at once and needs the "
                "password to log in again."
            )
        if not sections.ask_yes_no(self, "Revoke a device", question):
            return
        self.show_info(f"Revoking \u201c{device.name}\u201d...")
        self.actions.revoke_device(device.device)

    def revoked(self, device: str) -> None:
        info = self.devices.get(device)
        name = info.name if info is not None else "The device"
        self.show_done(f"\u201c{name}\u201d was revoked: it must log in with the password again.")

    def set_enabled(self, enabled: bool) -> None:
        self.refresh_button.configure(state="normal" if enabled else "disabled")
        if not enabled:
            self.revoke_button.configure(state="disabled")
        else:
            self._selection_changed()
