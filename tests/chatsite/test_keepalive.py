"""The product's keepalive (chatsite/keepalive.py) reaches every way it is started, and
stays consistent with the clients' keepalive and the proxies on the way."""

from __future__ import annotations

from pathlib import Path

from django.core.management import get_commands, load_command_class

from bench.product import Product
from chatsite import keepalive
from tk_client.session import KEEPALIVE_SECONDS


def test_runserver_is_daphnes_with_the_products_ping_interval_and_timeout():
    app = get_commands()["runserver"]
    command = load_command_class(app, "runserver")

    assert app == "chatsite"
    assert command.server_cls.keywords == {"ping_interval": 40, "ping_timeout": 20}


def test_the_daphne_options_say_the_same():
    assert keepalive.DAPHNE_ARGS == ("--ping-interval", "40", "--ping-timeout", "20")


def test_an_idle_client_hears_daphnes_ping_before_it_would_send_its_own():
    # daphne pings at its first check after PING_INTERVAL seconds of client silence.
    assert keepalive.PING_INTERVAL + keepalive.CHECK_PERIOD < KEEPALIVE_SECONDS


def test_a_silent_connection_carries_a_frame_within_a_proxys_60_second_idle_timeout():
    assert keepalive.PING_INTERVAL + keepalive.CHECK_PERIOD < 60


def test_the_bench_starts_the_product_with_its_keepalive_and_the_runs_options_after_it(
    tmp_path: Path,
):
    product = Product(tmp_path, tmp_path / "key.pem", tmp_path, database_url="sqlite")
    argv = product.server(8000, daphne_args=("--ping-interval", "100000")).argv

    ours = argv.index("--ping-interval")
    assert argv[ours : ours + 4] == list(keepalive.DAPHNE_ARGS)
    assert argv[ours + 4 : ours + 6] == ["--ping-interval", "100000"]  # the last one wins
