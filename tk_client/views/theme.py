"""Colours, fonts and ttk styles: one place that decides how the client looks."""

from __future__ import annotations

import tkinter as tk
import tkinter.font as tkfont
from tkinter import ttk

from .tkutil import release_fonts

# A light workspace with a dark sidebar, in the manner of the chat programs people know.
BACKGROUND = "#f4f5f7"
SURFACE = "#ffffff"
BORDER = "#dfe1e6"
TEXT = "#1d2129"
MUTED = "#6b7280"
FAINT = "#9aa1ad"
ACCENT = "#2f6fed"
ACCENT_ACTIVE = "#255ad0"
DANGER = "#c92a2a"
WARNING = "#b7791f"
SUCCESS = "#2f9e44"
OWN_BACKGROUND = "#eef4ff"
PRIVATE = "#7048e8"
PRIVATE_BACKGROUND = "#f5f0ff"
NOTICE_BACKGROUND = "#f8f9fa"

USERS_BACKGROUND = "#fafbfc"
SIDEBAR = "#1f2533"
SIDEBAR_TEXT = "#cfd5e1"
SIDEBAR_MUTED = "#8791a5"
SIDEBAR_SELECTED = "#2f6fed"
SIDEBAR_UNREAD = "#ffffff"

# Sender names get one of these colours, always the same for one name.
SENDER_COLOURS = (
    "#1864ab",
    "#2b8a3e",
    "#c2255c",
    "#e8590c",
    "#6741d9",
    "#0b7285",
    "#a61e4d",
    "#5c940d",
    "#862e9c",
    "#d9480f",
)


def sender_colour(name: str) -> str:
    """A stable colour per name (a tiny FNV-1a hash; Python's hash() changes per run)."""
    value = 2166136261
    for byte in name.encode("utf-8"):
        value = ((value ^ byte) * 16777619) & 0xFFFFFFFF
    return SENDER_COLOURS[value % len(SENDER_COLOURS)]


def _family(root: tk.Misc, *wanted: str) -> str:
    available = {name.lower(): name for name in tkfont.families(root)}
    for name in wanted:
        if name.lower() in available:
            return available[name.lower()]
    return tkfont.nametofont("TkDefaultFont", root=root).actual("family")


class Fonts:
    """The named fonts, created once per Tk root."""

    def __init__(self, root: tk.Misc) -> None:
        sans = _family(root, "DejaVu Sans", "Noto Sans", "Segoe UI", "Helvetica Neue", "Arial")
        mono = _family(root, "DejaVu Sans Mono", "Noto Sans Mono", "Consolas", "Menlo", "Courier")
        for name in ("TkDefaultFont", "TkTextFont", "TkMenuFont", "TkHeadingFont"):
            tkfont.nametofont(name, root=root).configure(family=sans, size=10)
        self.body = tkfont.Font(root=root, family=sans, size=11)
        self.body_italic = tkfont.Font(root=root, family=sans, size=11, slant="italic")
        self.sender = tkfont.Font(root=root, family=sans, size=11, weight="bold")
        self.small = tkfont.Font(root=root, family=sans, size=9)
        self.small_bold = tkfont.Font(root=root, family=sans, size=9, weight="bold")
        self.heading = tkfont.Font(root=root, family=sans, size=13, weight="bold")
        self.title = tkfont.Font(root=root, family=sans, size=20, weight="bold")
        self.list = tkfont.Font(root=root, family=sans, size=11)
        self.list_bold = tkfont.Font(root=root, family=sans, size=11, weight="bold")
        self.mono = tkfont.Font(root=root, family=mono, size=10)
        self.mono_small = tkfont.Font(root=root, family=mono, size=9)
        self.emoji = tkfont.Font(root=root, family=sans, size=26)  # codes to compare (4.7)
        self.code_name = tkfont.Font(root=root, family=sans, size=14, weight="bold")
        self.safety = tkfont.Font(root=root, family=mono, size=13)

    def release(self) -> None:
        """Delete the fonts before the window goes (see :func:`tkutil.release_fonts`)."""
        release_fonts(*(v for v in vars(self).values() if isinstance(v, tkfont.Font)))


def apply_theme(root: tk.Tk) -> Fonts:
    """Set up fonts and ttk styles on ``root``; returns the fonts for the widgets."""
    fonts = Fonts(root)
    root.configure(background=BACKGROUND)
    style = ttk.Style(root)
    if "clam" in style.theme_names():
        style.theme_use("clam")
    style.configure(".", background=BACKGROUND, foreground=TEXT, font="TkDefaultFont")
    style.configure("TFrame", background=BACKGROUND)
    style.configure("Surface.TFrame", background=SURFACE)
    style.configure("Card.TFrame", background=SURFACE, relief="solid", borderwidth=1)
    style.configure("TLabel", background=BACKGROUND, foreground=TEXT)
    style.configure("Surface.TLabel", background=SURFACE)
    style.configure("Muted.TLabel", background=SURFACE, foreground=MUTED)
    style.configure("Error.TLabel", background=SURFACE, foreground=DANGER)
    style.configure("Title.TLabel", background=SURFACE, font=fonts.title)
    style.configure("Heading.TLabel", background=SURFACE, font=fonts.heading)
    style.configure("Sub.TLabel", background=SURFACE, foreground=MUTED, font=fonts.small)
    style.configure("Mono.TLabel", background=SURFACE, foreground=MUTED, font=fonts.mono_small)
    style.configure("Badge.TLabel", background=PRIVATE, foreground="#ffffff", font=fonts.small_bold)
    style.configure(
        "TEntry", fieldbackground=SURFACE, bordercolor=BORDER, lightcolor=BORDER, padding=6
    )
    style.map("TEntry", bordercolor=[("focus", ACCENT)], lightcolor=[("focus", ACCENT)])
    style.configure("TButton", padding=(12, 6), background="#e9ecef", bordercolor=BORDER)
    style.map("TButton", background=[("active", "#dee2e6"), ("disabled", "#f1f3f5")])
    style.configure("Small.TButton", padding=(8, 1), font=fonts.small)
    style.configure(
        "Accent.TButton",
        background=ACCENT,
        foreground="#ffffff",
        bordercolor=ACCENT,
        lightcolor=ACCENT,
        darkcolor=ACCENT,
    )
    style.map(
        "Accent.TButton",
        background=[("disabled", "#a5c0f5"), ("active", ACCENT_ACTIVE)],
        foreground=[("disabled", "#f1f5ff")],
    )
    style.configure("Danger.TButton", background=DANGER, foreground="#ffffff", bordercolor=DANGER)
    style.map("Danger.TButton", background=[("disabled", "#e9a5a5"), ("active", "#a61e1e")])
    # The dark conversation list.
    style.configure(
        "Sidebar.Treeview",
        background=SIDEBAR,
        fieldbackground=SIDEBAR,
        foreground=SIDEBAR_TEXT,
        borderwidth=0,
        rowheight=int(fonts.list.metrics("linespace") * 1.75),
        font=fonts.list,
    )
    style.map(
        "Sidebar.Treeview",
        background=[("selected", SIDEBAR_SELECTED)],
        foreground=[("selected", "#ffffff")],
    )
    style.layout("Sidebar.Treeview", [("Sidebar.Treeview.treearea", {"sticky": "nswe"})])
    # Sections are always open: no expand/collapse indicator, little indentation.
    item_without_indicator = [
        (
            "Treeitem.padding",
            {
                "sticky": "nswe",
                "children": [
                    ("Treeitem.image", {"side": "left", "sticky": ""}),
                    ("Treeitem.text", {"side": "left", "sticky": ""}),
                ],
            },
        )
    ]
    style.layout("Sidebar.Treeview.Item", item_without_indicator)  # type: ignore[arg-type]  # typeshed's _LayoutSpec is narrower than Tk's layouts
    style.layout("Users.Treeview.Item", item_without_indicator)  # type: ignore[arg-type]  # typeshed's _LayoutSpec is narrower than Tk's layouts
    style.configure("Sidebar.Treeview", indent=10)
    style.configure("Users.Treeview", indent=6)
    style.configure("Sidebar.TFrame", background=SIDEBAR)
    style.configure("Sidebar.TLabel", background=SIDEBAR, foreground="#ffffff", font=fonts.heading)
    style.configure("SidebarSub.TLabel", background=SIDEBAR, foreground=SIDEBAR_MUTED)
    # The light list of users.
    style.configure(
        "Users.Treeview",
        background=USERS_BACKGROUND,
        fieldbackground=USERS_BACKGROUND,
        foreground=TEXT,
        borderwidth=0,
        rowheight=int(fonts.list.metrics("linespace") * 1.6),
        font=fonts.list,
    )
    style.map(
        "Users.Treeview",
        background=[("selected", "#e7efff")],
        foreground=[("selected", TEXT)],
    )
    style.layout("Users.Treeview", [("Users.Treeview.treearea", {"sticky": "nswe"})])
    style.configure("Users.TFrame", background=USERS_BACKGROUND)
    style.configure(
        "Users.TLabel", background=USERS_BACKGROUND, foreground=MUTED, font=fonts.small_bold
    )
    style.configure("Status.TFrame", background="#e9ecf1")
    style.configure("Status.TLabel", background="#e9ecf1", foreground=MUTED, font=fonts.small)
    style.configure(
        "StatusKey.TLabel", background="#e9ecf1", foreground=FAINT, font=fonts.mono_small
    )
    style.configure("Header.TFrame", background=SURFACE)
    style.configure("Code.TFrame", background=NOTICE_BACKGROUND, relief="solid", borderwidth=1)
    style.configure("Code.TLabel", background=NOTICE_BACKGROUND, foreground=TEXT)
    style.configure("Hint.TLabel", background=SURFACE, foreground=FAINT, font=fonts.small)
    # A slim scrollbar without arrows.
    style.layout(
        "Vertical.TScrollbar",
        [
            (  # type: ignore[list-item]  # typeshed's _LayoutSpec is narrower than Tk's layouts
                "Vertical.Scrollbar.trough",
                {
                    "sticky": "ns",
                    "children": [("Vertical.Scrollbar.thumb", {"expand": "1", "sticky": "nswe"})],
                },
            )
        ],
    )
    style.configure(
        "Vertical.TScrollbar",
        background="#c9ced6",
        troughcolor=SURFACE,
        bordercolor=SURFACE,
        lightcolor="#c9ced6",
        darkcolor="#c9ced6",
        gripcount=0,
        arrowsize=10,
    )
    style.map("Vertical.TScrollbar", background=[("active", "#aab1bc")])
    style.configure("TPanedwindow", background=BORDER)
    # The login form's check box and the Account window's sections.
    style.configure(
        "Surface.TCheckbutton",
        background=SURFACE,
        indicatorbackground=SURFACE,
        indicatorforeground=ACCENT,
        indicatormargin=(0, 0, 6, 0),
    )
    style.map("Surface.TCheckbutton", background=[("active", SURFACE)])
    style.configure("Section.TLabelframe", background=SURFACE, bordercolor=BORDER)
    style.configure(
        "Section.TLabelframe.Label", background=SURFACE, foreground=TEXT, font=fonts.heading
    )
    style.configure("Success.TLabel", background=SURFACE, foreground=SUCCESS)
    style.configure("Banner.TLabel", background="#fff4e6", foreground=WARNING, padding=(12, 8))
    style.configure(
        "Devices.Treeview",
        background=SURFACE,
        fieldbackground=SURFACE,
        foreground=TEXT,
        rowheight=int(fonts.list.metrics("linespace") * 1.5),
    )
    style.map(
        "Devices.Treeview", background=[("selected", "#e7efff")], foreground=[("selected", TEXT)]
    )
    style.configure("Devices.Treeview.Heading", background=NOTICE_BACKGROUND, font=fonts.small_bold)
    return fonts
