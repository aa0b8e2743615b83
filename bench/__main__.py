"""``python -m bench``: run the scenarios, save the raw results, write the report.

Every server is started here on a free loopback port and stopped at the end;
the product gets a temp data dir and a fresh database. Raw results go to
``bench/results/`` (ignored by git); the report and plot to ``docs/`` (a
``--quick`` run writes them under ``bench/results/quick/`` instead, so that a
smoke run never replaces the published figures).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from chatproto import crypto_utils

from . import procs, report
from .config import Config, from_args, parser
from .product import Product, ProductUnavailable
from .servers import Context


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.report_only:
        results = json.loads(Path(args.report_only).read_text())
        out_dir = Path(args.out_dir or results["meta"]["config"]["out_dir"])
        written = report.write(results, procs.REPO / out_dir)
        print("\n".join(f"wrote {p}" for p in written))
        return 0
    cfg = from_args(args)
    nofile = procs.raise_nofile_limit(max(65536, cfg.idle_sessions * 3))
    tmp = Path(tempfile.mkdtemp(prefix="chat-bench-"))
    # Server logs of the last run stay for a post-mortem (bench/results/ is ignored by git).
    log_dir = procs.REPO / "bench" / "results" / ("logs-quick" if cfg.quick else "logs")
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    key_file = tmp / "server_key.pem"
    crypto_utils.load_private_key(key_file)  # RSA-3072, mode 0600, shared by every server
    ctx = Context(
        tmp=tmp,
        key_file=key_file,
        redis_url=cfg.redis_url,
        log_dir=log_dir,
        daphne_args=cfg.daphne_args,
    )
    started = time.time()
    results: dict = {
        "meta": report.machine_info(cfg, argv if argv is not None else sys.argv[1:], nofile),
    }
    results["meta"]["config"] = asdict(cfg)
    product: Product | None = None
    try:
        product = _prepare_product(ctx, cfg, log_dir)
        results["meta"]["database"] = product.database if product else None
        for name in cfg.scenarios:
            results[name] = _run_scenario(name, ctx, cfg)
            _save(results, cfg)
    finally:
        if product is not None:
            product.cleanup()
        results["meta"]["duration_s"] = round(time.time() - started, 1)
        results["meta"]["notes"] = ctx.notes
        _save(results, cfg)
    written = report.write(results, procs.REPO / cfg.out_dir)
    print("\n".join(f"wrote {p}" for p in written))
    print(f"raw results: {procs.REPO / cfg.results}; server logs: {log_dir}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _prepare_product(ctx: Context, cfg: Config, log_dir: Path) -> Product | None:
    wanted = ("fanout" in cfg.scenarios and "product" in cfg.fanout_servers) or set(
        cfg.scenarios
    ) - {"fanout"}
    if not wanted:
        return None
    product = Product(ctx.tmp, ctx.key_file, log_dir, cfg.database_url)
    try:
        product.prepare(receivers=max(max(cfg.fanout_n, default=1), cfg.idle_users, 50))
    except ProductUnavailable as exc:
        ctx.notes.append(f"product server unavailable: {exc}")
        print(f"[bench] product server unavailable: {exc}", flush=True)
        product.cleanup()
        return None
    ctx.product = product
    return product


def _run_scenario(name: str, ctx: Context, cfg: Config) -> dict:
    from .scenarios import e2e, e2e_files, fanout, files, handshake, idle, scaleout, storm

    module = {
        "fanout": fanout,
        "handshake": handshake,
        "idle": idle,
        "scaleout": scaleout,
        "files": files,
        "e2e": e2e,
        "e2e_files": e2e_files,
        "storm": storm,
    }[name]
    began = time.monotonic()
    print(f"[bench] scenario {name}", flush=True)
    try:
        result = module.run(ctx, cfg)
    except Exception as exc:
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"[:600]}
    result["seconds"] = round(time.monotonic() - began, 1)
    return result


def _save(results: dict, cfg: Config) -> None:
    path = procs.REPO / cfg.results
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    raise SystemExit(main())
