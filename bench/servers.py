"""Every server the bench can start, by name, and how a client reaches it.

A :class:`Kind` knows its command line and its endpoint; the scenarios ask for
servers by name and never build command lines themselves. The product is the
one kind that needs preparation (a migrated database, users); see
:mod:`bench.product`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import procs
from .loadgen import Target


@dataclass
class Context:
    """What every server of one bench run shares: a temp folder, a key, Redis."""

    tmp: Path
    key_file: Path
    redis_url: str
    log_dir: Path
    product: object | None = None  # a bench.product.Product once prepared
    daphne_args: tuple[str, ...] = ()  # extra daphne options for every daphne-served server
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    secure: bool
    path: str = "/ws/chat/"

    def target(self, server: procs.ServerProcess, login: bool = True) -> Target:
        return Target(server.url_base + self.path, server.origin, self.secure, login)

    def make(self, ctx: Context, port: int | None = None, **options: str) -> procs.ServerProcess:
        """A not-yet-started server process on ``port`` (a free one by default)."""
        port = port or procs.free_port()
        env: dict[str, str] = {}
        if self.name in ("ws-plain", "ws-sealed"):
            mode = "sealed" if self.secure else "plain"
            argv = procs.python_argv(
                "-m",
                "bench.baselines.ws_broadcast",
                "--port",
                str(port),
                "--mode",
                mode,
                "--key",
                str(ctx.key_file),
            )
        elif self.name == "ws-relay":
            argv = procs.python_argv("-m", "bench.baselines.ws_relay", "--port", str(port))
        elif self.name == "raw-asgi":
            argv = procs.daphne_argv("bench.baselines.raw_asgi:application", port, *ctx.daphne_args)
        elif self.name.startswith("channels"):
            env = {
                "DJANGO_SETTINGS_MODULE": "bench.baselines.channels_site.settings",
                "BENCH_LAYER": options.get("layer", "memory"),
                "BENCH_NO_DB_HOP": "1" if self.name == "channels-nohop" else "0",
                "REDIS_URL": ctx.redis_url,
                "BENCH_PREFIX": options.get("prefix", "bench"),
            }
            argv = procs.daphne_argv(
                "bench.baselines.channels_site.asgi:application", port, *ctx.daphne_args
            )
        elif self.name == "product":
            from .product import Product

            product = ctx.product
            if not isinstance(product, Product):
                raise procs.ServerError("the product server was not prepared")
            return product.server(port, daphne_args=ctx.daphne_args, **options)
        else:
            raise KeyError(self.name)
        return procs.ServerProcess(self.name, argv, port, ctx.log_dir, env)


KINDS = {
    kind.name: kind
    for kind in (
        Kind("product", "our server (encrypted, Channels on daphne)", secure=True),
        Kind("ws-plain", "bare websockets, no encryption", secure=False, path="/"),
        Kind("ws-sealed", "bare websockets, AES-CBC+HMAC per recipient", secure=True, path="/"),
        Kind("channels", "Channels group_send on daphne, no encryption", secure=False),
        Kind(
            "channels-nohop",
            "Channels group_send on daphne, no encryption, no DB hop in dispatch",
            secure=False,
        ),
        Kind("raw-asgi", "raw ASGI on daphne, in-process fan-out, no encryption", secure=False),
        Kind("ws-relay", "bare websockets relay, no encryption", secure=False, path="/"),
    )
}
