"""Scale-out: the fan-out scenario over 1, 2 and 4 daphne processes sharing Redis.

Receivers are spread round-robin over the processes; the sender talks to the
first. The server CPU is the sum over the processes plus the local Redis
server's (found by name, read-only), since the channel layer's work is part of
the cost. The product and, beside it, the plain Channels broadcast run on the
same process counts with channels_redis's core layer (``RedisChannelLayer``) and
its Pub/Sub layer (``RedisPubSubChannelLayer``), measured in the same run (the
product picks its layer with ``CHAT_REDIS_LAYER``).
Every configuration gets its own key prefix, so no run sees another's messages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import traceback
from typing import Any

import psutil

from .. import procs, product
from ..config import Config
from ..servers import KINDS, Context
from . import fanout


def run(ctx: Context, cfg: Config) -> dict[str, Any]:
    if not _redis_ok(cfg.redis_url):
        return {"unavailable": f"Redis does not answer at {cfg.redis_url}; start it to measure"}
    point_cfg = dataclasses.replace(cfg, fanout_n=(cfg.scaleout_n,), runs=cfg.scaleout_runs)
    result: dict[str, Any] = {
        "n": cfg.scaleout_n,
        "processes": list(cfg.scaleout_processes),
        "redis_url": cfg.redis_url,
        "runs": cfg.scaleout_runs,
        "configs": {},
    }
    configs = []
    for kind_name in ("product", "channels"):
        for layer in cfg.scaleout_layers:
            name = "RedisChannelLayer" if layer == "redis" else "RedisPubSubChannelLayer"
            label = "product" if kind_name == "product" else "Channels group_send"
            configs.append((kind_name, layer, f"{label}, {name}"))
    redis_pids = _redis_pids()
    for kind_name, layer, label in configs:
        key = f"{kind_name}-{layer}"
        entry: dict[str, Any] = {"label": label, "points": {}}
        result["configs"][key] = entry
        for count in cfg.scaleout_processes:
            print(f"[scaleout] {key} x{count}", flush=True)
            try:
                entry["points"][str(count)] = _measure(
                    ctx, point_cfg, kind_name, layer, count, redis_pids
                )
            except Exception as exc:
                entry["points"][str(count)] = {"error": f"{type(exc).__name__}: {exc}"[:600]}
                print(f"[scaleout] {key} x{count}: {exc}", flush=True)
                if not isinstance(exc, (procs.ServerError, product.ProductUnavailable)):
                    traceback.print_exc()
    return result


def _measure(
    ctx: Context, cfg: Config, kind_name: str, layer: str, count: int, redis_pids: list[int]
) -> dict[str, Any]:
    kind = KINDS[kind_name]
    prefix = f"bench{os.getpid()}{kind_name[:2]}{layer[:2]}{count}"
    if kind_name == "product":
        product_layer = "core" if layer == "redis" else "pubsub"
        servers = [
            kind.make(
                ctx,
                redis_url=cfg.redis_url,
                prefix=prefix,
                tag=f"-x{count}-{i}",
                layer=product_layer,
            )
            for i in range(count)
        ]
    else:
        servers = [kind.make(ctx, layer=layer, prefix=prefix) for _ in range(count)]
    measured = fanout.fanout_server(ctx, cfg, kind, servers=servers, extra_pids=redis_pids)
    point = measured["points"][str(cfg.scaleout_n)]
    point["redis_cpu_included"] = bool(redis_pids)
    return point


def _redis_ok(url: str) -> bool:
    try:
        import redis
    except ImportError:
        return False
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except Exception:
        return False


def _redis_pids() -> list[int]:
    pids = []
    for proc in psutil.process_iter(["name"]):
        with contextlib.suppress(psutil.Error):
            if (proc.info["name"] or "").startswith("redis-server"):
                pids.append(proc.pid)
    return pids
