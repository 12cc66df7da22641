"""A remote codec server, so people who hold the payload keys can read encrypted histories.

    python -m sessions.codec_server [--host 127.0.0.1] [--port 8081] [--ui-origin URL]...
    temporal workflow show -w session-S --codec-endpoint http://127.0.0.1:8081
    temporal server start-dev --ui-codec-endpoint http://127.0.0.1:8081   # the Web UI

It answers Temporal's codec protocol (`POST /encode`, `POST /decode`, a JSON `{"payloads": [...]}`)
with the keys of `SESSIONS_PAYLOAD_KEYS`. Whoever can reach it can decrypt: it listens on
127.0.0.1 by default, and with `SESSIONS_CODEC_AUTH` set it demands that exact `Authorization`
header (the CLI's `--codec-auth`; the Web UI sends its own user's token).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence

import click
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payload, Payloads

from common.cli import CONTEXT_SETTINGS
from common.cli import main as run_command
from common.codec import KEYS_ENV, EncryptionCodec, PayloadKeyError, codec_for
from common.errors import ConfigError
from common.settings import CodecServerSettings

DEFAULT_UI_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")
"""`temporal server start-dev`'s Web UI; add yours with --ui-origin."""

Transform = Callable[[Sequence[Payload]], Awaitable[list[Payload]]]


def build_app(
    codec: EncryptionCodec, *, auth: str | None = None, origins: Sequence[str] = DEFAULT_UI_ORIGINS
) -> Starlette:
    """The codec endpoints over `codec`; `auth`: the Authorization header required, if any."""

    def cors(request: Request, response: Response) -> Response:
        origin = request.headers.get("origin", "")
        if origin in origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "POST"
            response.headers["Access-Control-Allow-Headers"] = (
                "content-type,x-namespace,authorization"
            )
            response.headers["Access-Control-Allow-Credentials"] = "true"
        return response

    def endpoint(transform: Transform) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            if request.method == "OPTIONS":
                return cors(request, Response(status_code=200))
            given = request.headers.get("authorization", "")
            if auth is not None and not hmac.compare_digest(given.encode(), auth.encode()):
                return cors(request, JSONResponse({"message": "unauthorized"}, status_code=401))
            try:
                payloads = json_format.Parse(await request.body(), Payloads())
                out = Payloads(payloads=await transform(payloads.payloads))
            except (json_format.ParseError, PayloadKeyError) as err:
                return cors(request, JSONResponse({"message": str(err)}, status_code=400))
            body = json_format.MessageToJson(out)
            return cors(request, Response(body, media_type="application/json"))

        return handle

    return Starlette(
        routes=[
            Route("/encode", endpoint(codec.encode), methods=["POST", "OPTIONS"]),
            Route("/decode", endpoint(codec.decode), methods=["POST", "OPTIONS"]),
        ]
    )


@click.command(context_settings=CONTEXT_SETTINGS, help=__doc__.splitlines()[0])
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8081, show_default=True)
@click.option(
    "--ui-origin",
    multiple=True,
    metavar="URL",
    help="A Web UI origin allowed to call it (repeatable) [default: the dev server's UI].",
)
def command(host: str, port: int, ui_origin: Sequence[str]) -> int:
    settings = CodecServerSettings.load()
    keys = settings.payload_keys
    codec = codec_for(keys.get_secret_value() if keys is not None else None)
    if codec is None:
        raise ConfigError(f"{KEYS_ENV} is not set: there is nothing to decrypt with")
    import uvicorn

    auth = settings.codec_auth.get_secret_value() if settings.codec_auth is not None else None
    app = build_app(codec, auth=auth or None, origins=tuple(ui_origin) or DEFAULT_UI_ORIGINS)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(command, argv, prog_name="python -m sessions.codec_server")


if __name__ == "__main__":
    main()
