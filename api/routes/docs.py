"""``GET /docs`` (Swagger UI) and ``GET /redoc`` with their scripts and style sheet served by this
server, from the ``fastapi-offline`` package's copies (FastAPI's own pages load them from a CDN,
which leaves them blank without a network). The pages reach no other host."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from api.errors import ApiError

router = APIRouter(include_in_schema=False)

#: The files the pages load, by name: their media types.
ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8", "swagger-ui.css": "text/css; charset=utf-8",
          "redoc.standalone.js": "text/javascript; charset=utf-8", "favicon.png": "image/png"}
ASSET_PATH = "/docs/static/"


def _asset_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).resolve().parent / "static"


def _base(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    base = _base(request)
    return get_swagger_ui_html(openapi_url=base + request.app.openapi_url, title=f"{request.app.title} API",
                               swagger_js_url=base + ASSET_PATH + "swagger-ui-bundle.js",
                               swagger_css_url=base + ASSET_PATH + "swagger-ui.css",
                               swagger_favicon_url=base + ASSET_PATH + "favicon.png",
                               # no badge from the public validator service (another host)
                               swagger_ui_parameters={"validatorUrl": None})


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    base = _base(request)
    return get_redoc_html(openapi_url=base + request.app.openapi_url, title=f"{request.app.title} API",
                          redoc_js_url=base + ASSET_PATH + "redoc.standalone.js",
                          redoc_favicon_url=base + ASSET_PATH + "favicon.png", with_google_fonts=False)


@router.get(ASSET_PATH + "{name}")
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise ApiError(404, "not_found", f"no such file {name!r}; the pages' files are: {', '.join(ASSETS)}", "name")
    return Response((_asset_dir() / name).read_bytes(), media_type=ASSETS[name],
                    headers={"Cache-Control": "public, max-age=86400"})
