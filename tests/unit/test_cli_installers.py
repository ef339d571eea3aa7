"""`netstack serve`'s service installers: where they live and how a bad option surfaces."""
import asyncio

import pytest

from netstack.cli import UsageError, build_parser, serve, serve_services, serve_smtp
from netstack.link.memory import MemoryLink
from netstack.stack import Stack


def test_the_installers_are_cli_modules_in_order():
    assert serve.SERVICE_MODULES == [serve_services, serve_smtp]
    for mod in serve.SERVICE_MODULES:
        assert mod.__name__.startswith("netstack.cli.") and callable(mod.install_from_args)


def test_an_unloadable_certificate_is_a_usage_error(tmp_path):
    args = build_parser().parse_args(["serve", "--maildir", str(tmp_path / "mail"),
                                      "--tls-cert", str(tmp_path / "missing.pem")])
    a, _b = MemoryLink.pair()

    async def main():
        async with Stack(a, "10.9.0.2") as stack:
            await serve_smtp.install_from_args(stack, args)

    with pytest.raises(UsageError, match="missing.pem: cannot load certificate/key"):
        asyncio.run(main())
