"""`tierwise serve`: run the REST service (uvicorn). Binds to loopback unless told otherwise."""

from __future__ import annotations

import socket
from typing import Annotated

import typer

from planner.cli.common import CliError, err_console

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind. Loopback by default; 0.0.0.0 exposes the service to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0 picks a free one).")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level: critical, error, warning, info, debug.")] = "info",
) -> None:
    """Serve the planning REST API (OpenAPI at /docs). Configuration: TIERWISE_* environment variables (docs/api.md)."""
    import uvicorn

    if log_level.lower() not in LOG_LEVELS:
        raise CliError(f"--log-level must be one of {', '.join(LOG_LEVELS)}; got {log_level!r}", field="log_level")
    _check_bindable(host, port)

    from api.main import create_app
    from api.settings import Settings

    settings = Settings.from_env()
    if host not in ("127.0.0.1", "::1", "localhost") and not settings.api_key:
        err_console.print(f"[yellow]warning:[/] serving on {host} without TIERWISE_API_KEY: anyone who can reach the port can use it")
    app = create_app(settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower(), access_log=False, server_header=False)


def _check_bindable(host: str, port: int) -> None:
    """Refuse a host that is not an address here, or a port already taken, before starting:
    uvicorn would log the error and exit 3, which the command line reserves for "nothing
    feasible". (The check binds and closes; the server binds again at once.)"""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise CliError(f"--host {host!r} is not an address of this machine ({getattr(exc, 'strerror', None) or exc})",
                       field="host") from None
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a port in TIME_WAIT is free
        try:
            s.bind(addr)
        except OSError as exc:
            raise CliError(f"--port {port} on {host} cannot be used ({exc.strerror or exc}); pick another --port "
                           "(0 picks a free one)", field="port") from None


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
