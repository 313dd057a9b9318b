"""`tierwise serve`: run the REST service (uvicorn). Binds to loopback unless told otherwise."""

from __future__ import annotations

from typing import Annotated

import typer

from planner.cli.common import err_console


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind. Loopback by default; 0.0.0.0 exposes the service to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0 picks a free one).")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level: critical, error, warning, info, debug.")] = "info",
) -> None:
    """Serve the planning REST API (OpenAPI at /docs). Configuration: TIERWISE_* environment variables (docs/api.md)."""
    import uvicorn

    from api.main import create_app
    from api.settings import Settings

    settings = Settings.from_env()
    if host not in ("127.0.0.1", "::1", "localhost") and not settings.api_key:
        err_console.print(f"[yellow]warning:[/] serving on {host} without TIERWISE_API_KEY: anyone who can reach the port can use it")
    app = create_app(settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, server_header=False)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
