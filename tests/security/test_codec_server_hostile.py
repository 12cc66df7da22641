"""The codec server (`python -m sessions.codec_server`) under hostile input, over real HTTP.

It decrypts for whoever reaches it, so: a body that is no codec request is one JSON 400 that
quotes nothing of it (never a 500 or a traceback, nothing in the log); a body over the limit is a
413 whether or not it declares its length; a `Host` it does not answer for (DNS rebinding) is
refused, and so is a foreign `Origin`; and it will not start without an auth token unless told
`SESSIONS_CODEC_AUTH=off`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload

from common.codec import ENCODING, KEY_ID, KEYS_ENV, EncryptionCodec, data_converter
from common.settings import parse_keys
from sessions.codec_server import build_app
from tests.fixtures.cli import Result, clean_env
from tests.fixtures.http import serving_http
from tests.fixtures.security import new_key

SECRET = "sk-hostile-7d1e"
"""Put in the bodies sent: no answer and no log line may contain it."""
KEYS = f"k1:{new_key()}"
AUTH = "Bearer let-me-in"
LIMIT = 4096
UI = "http://localhost:8233"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encrypted(data: bytes, key_id: str = "k1") -> dict[str, Any]:
    """A payload as the Web UI sends it, claiming to be encrypted under `key_id`."""
    return {
        "metadata": {"encoding": b64(ENCODING), KEY_ID: b64(key_id.encode())},
        "data": b64(data),
    }


def body(*payloads: Any) -> bytes:
    return json.dumps({"payloads": list(payloads)}).encode()


@pytest.fixture
def codec() -> EncryptionCodec:
    return EncryptionCodec(parse_keys(KEYS))


@contextlib.asynccontextmanager
async def codec_client(codec: EncryptionCodec, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a real codec server (uvicorn, a free port) demanding `AUTH`."""
    app = build_app(codec, auth=AUTH, max_body_bytes=LIMIT, **options)
    async with serving_http(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        client.headers["Authorization"] = AUTH
        yield client


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Everything the server and uvicorn log; no payload may be in it."""
    with caplog.at_level(logging.DEBUG):
        yield caplog
    assert SECRET not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def assert_refused(response: httpx.Response, status: int) -> str:
    """One JSON message, quoting nothing that was sent: the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert "Traceback" not in response.text and SECRET not in response.text
    answer = response.json()
    assert list(answer) == ["message"] and answer["message"]
    return str(answer["message"])


BAD_BODIES: list[tuple[str, str, bytes, str]] = [
    # (id, endpoint, body, what the message says)
    ("not-utf8", "/decode", b'{"payloads": ["\xff\xfe' + SECRET.encode() + b'"]}', "not UTF-8"),
    ("not-json", "/decode", b'{"payloads": [' + SECRET.encode(), "not JSON"),
    ("empty", "/encode", b"", "not JSON"),
    ("deep-json", "/decode", b"[" * (LIMIT - 1), "not JSON"),
    ("json-list", "/decode", json.dumps([SECRET]).encode(), "must be a JSON object"),
    ("payloads-string", "/encode", json.dumps({"payloads": SECRET}).encode(), "must be a JSON"),
    ("payloads-object", "/decode", json.dumps({"payloads": {"a": SECRET}}).encode(), "must be"),
    ("payload-string", "/decode", body(SECRET), "payload 1 is not a Temporal payload"),
    ("payload-list", "/encode", body({}, [SECRET]), "payload 2 is not a Temporal payload"),
    ("bad-base64", "/decode", body({"metadata": {}, "data": f"!{SECRET}!"}), "payload 1 is not"),
    (
        "bad-metadata-base64",
        "/encode",
        body({"metadata": {"encoding": f"{SECRET}==="}, "data": ""}),
        "payload 1 is not",
    ),
    ("metadata-not-string", "/decode", body({"metadata": {"encoding": 5}}), "payload 1 is not"),
    ("unknown-field", "/decode", body({SECRET: "eA=="}), "payload 1 is not a Temporal payload"),
    ("short-ciphertext", "/decode", body(encrypted(SECRET.encode()[:5])), "too short"),
    ("empty-ciphertext", "/decode", body(encrypted(b"")), "too short"),
    (
        "not-decrypting",
        "/decode",
        body(encrypted(bytes(12) + SECRET.encode() * 4)),
        "key id 'k1': the key configured under that id is not the one that encrypted it",
    ),
    (
        "unknown-key-id",
        "/decode",
        body(encrypted(bytes(64), key_id="k9")),
        "encrypted with key id 'k9': SESSIONS_PAYLOAD_KEYS has 'k1'",
    ),
    (
        "malformed-key-id",
        "/decode",
        body(encrypted(bytes(64), key_id=f"<{SECRET}>")),
        "encrypted with a malformed key id",
    ),
]


@pytest.mark.fast
@pytest.mark.parametrize(
    ("endpoint", "sent", "says"), [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES]
)
async def test_a_bad_body_is_one_json_400(
    codec: EncryptionCodec,
    server_log: pytest.LogCaptureFixture,
    endpoint: str,
    sent: bytes,
    says: str,
) -> None:
    async with codec_client(codec) as client:
        response = await client.post(endpoint, content=sent, headers={"Origin": UI})
        assert says in assert_refused(response, 400)
        assert response.headers["access-control-allow-origin"] == UI  # the Web UI can show it
        # And the server carries on.
        assert (await client.post("/encode", content=body())).status_code == 200


@pytest.mark.fast
async def test_a_happy_round_trip_still_works(codec: EncryptionCodec) -> None:
    plain = data_converter().payload_converter.to_payload({"OPENAI_API_KEY": SECRET})
    async with codec_client(codec) as client:
        sealed = await client.post("/encode", content=body(json_format.MessageToDict(plain)))
        assert sealed.status_code == 200, sealed.text
        [payload] = sealed.json()["payloads"]
        assert SECRET not in base64.b64decode(payload["data"]).decode(errors="replace")
        opened = await client.post("/decode", content=body(payload), headers={"Origin": UI})
        assert opened.status_code == 200, opened.text
        assert opened.headers["access-control-allow-origin"] == UI
        [back] = opened.json()["payloads"]
        assert json_format.ParseDict(back, Payload()) == plain
        # Protobuf's JSON writes no payloads as `{}`: nothing to do, not an error.
        assert (await client.post("/decode", content=b"{}")).json() == {}
        # Without the header: refused, as before.
        del client.headers["Authorization"]
        assert_refused(await client.post("/decode", content=body(payload)), 401)


# ---------------------------------------------------------------- size


@pytest.mark.fast
async def test_a_body_over_the_limit_is_413_with_or_without_a_content_length(
    codec: EncryptionCodec, server_log: pytest.LogCaptureFixture
) -> None:
    big = body({"metadata": {}, "data": b64(SECRET.encode() * (2 * LIMIT // len(SECRET)))})
    assert LIMIT < len(big) <= 4 * LIMIT  # read and dropped: a client that sends it all sees 413

    async def streamed() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]
            await asyncio.sleep(0)

    async with codec_client(codec) as client:
        declared = await client.post("/decode", content=big)
        assert "larger than 4096 bytes (SESSIONS_CODEC_MAX_BODY_BYTES)" in assert_refused(
            declared, 413
        )
        chunked = client.build_request("POST", "/encode", content=streamed())
        assert "content-length" not in chunked.headers
        assert chunked.headers["transfer-encoding"] == "chunked"
        assert_refused(await client.send(chunked), 413)
        # A body at the limit is read.
        fits = body({"metadata": {}, "data": b64(bytes(LIMIT // 2))})
        assert len(fits) <= LIMIT
        assert (await client.post("/encode", content=fits)).status_code == 200


async def raw_post(
    port: int, head: str, host: str = "127.0.0.1:{port}"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /decode HTTP/1.1\r\nHost: {host.format(port=port)}\r\nAuthorization: {AUTH}\r\n"
        f"{head}\r\n\r\n".encode()
    )
    await writer.drain()
    return reader, writer


@pytest.mark.fast
@pytest.mark.parametrize(
    ("host", "status"), [("127.0.0.1:{port}", 413), ("evil.example:{port}", 421)]
)
async def test_a_huge_declared_body_is_answered_before_it_is_sent(
    codec: EncryptionCodec, host: str, status: int
) -> None:
    """Nothing of it is read: the answer comes at once, and the connection closes."""
    async with codec_client(codec) as client:
        port = client.base_url.port or 0
        reader, writer = await raw_post(port, "Content-Length: 1000000000000", host)
        writer.write(b'{"payloads": [')
        answer = await asyncio.wait_for(reader.read(), 10)  # answered, then closed
        writer.close()
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer
    assert b"connection: close" in answer.lower()


@pytest.mark.fast
async def test_an_endless_chunked_body_is_cut(codec: EncryptionCodec) -> None:
    """A sender that never ends its body: 413, and the connection is closed."""
    async with codec_client(codec) as client:
        reader, writer = await raw_post(client.base_url.port or 0, "Transfer-Encoding: chunked")
        chunk = b"x" * 1024

        async def send_forever() -> int:
            sent = 0
            with contextlib.suppress(ConnectionError):
                while True:
                    writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await writer.drain()
                    sent += len(chunk)
            return sent

        sender = asyncio.create_task(send_forever())
        status = await asyncio.wait_for(reader.readline(), 10)
        # It stops: the server closed the connection (what it sent filled the sockets' buffers).
        await asyncio.wait_for(sender, 10)
        writer.close()
    assert status.startswith(b"HTTP/1.1 413 "), status


# ---------------------------------------------------------------- Host and Origin


@pytest.mark.fast
@pytest.mark.parametrize(
    "host",
    [
        "evil.example:{port}",
        "evil.example",
        "localhost:1",
        "127.0.0.2:{port}",
        "localhost:{port}@x",
    ],
    ids=["rebound-name", "no-port", "other-port", "other-address", "garbage"],
)
async def test_a_host_it_does_not_answer_for_is_refused(codec: EncryptionCodec, host: str) -> None:
    async with codec_client(codec) as client:
        port = client.base_url.port
        payload = (await client.post("/encode", content=body({"data": "eA=="}))).json()
        response = await client.post(
            "/decode",
            content=json.dumps(payload).encode(),
            headers={"Host": host.format(port=port)},
        )
        assert "SESSIONS_CODEC_ALLOWED_HOSTS" in assert_refused(response, 421)
        for name in ("localhost", "127.0.0.1"):  # the loopback names at its port are answered
            ok = await client.post("/encode", content=body(), headers={"Host": f"{name}:{port}"})
            assert ok.status_code == 200


@pytest.mark.fast
async def test_allowed_hosts_are_answered(codec: EncryptionCodec) -> None:
    async with codec_client(codec, hosts=["codec.internal", "proxy.example:8443"]) as client:
        for host, status in [
            ("codec.internal", 200),
            ("CODEC.internal:9999", 200),
            ("proxy.example:8443", 200),
            ("proxy.example:8444", 421),
            ("proxy.example", 421),
        ]:
            response = await client.post("/encode", content=body(), headers={"Host": host})
            assert response.status_code == status, host


@pytest.mark.fast
async def test_a_request_without_a_host_is_refused(codec: EncryptionCodec) -> None:
    async with codec_client(codec) as client:
        port = client.base_url.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /encode HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 421"), answer


@pytest.mark.fast
@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://localhost:8234", "https://localhost:8233"]
)
async def test_a_foreign_origin_is_refused(codec: EncryptionCodec, origin: str) -> None:
    async with codec_client(codec) as client:
        post = await client.post("/encode", content=body(), headers={"Origin": origin})
        assert "--ui-origin" in assert_refused(post, 403)
        assert "access-control-allow-origin" not in post.headers
        preflight = await client.options(
            "/decode",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        assert_refused(preflight, 403)
        assert "access-control-allow-origin" not in preflight.headers


@pytest.mark.fast
@pytest.mark.parametrize(
    "origin", ["http://localhost:8233", "http://127.0.0.1:8233", "https://ui.example"]
)
async def test_an_allowed_origin_gets_its_preflight(codec: EncryptionCodec, origin: str) -> None:
    allowed = ("http://localhost:8233", "http://127.0.0.1:8233", "https://UI.example/")
    async with codec_client(codec, origins=allowed) as client:
        del client.headers["Authorization"]  # a browser's preflight carries no credentials
        preflight = await client.options(
            "/decode",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == origin
        assert preflight.headers["access-control-allow-credentials"] == "true"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        for header in ("authorization", "content-type", "x-namespace"):
            assert header in preflight.headers["access-control-allow-headers"]
        assert "Origin" in preflight.headers["vary"]
        post = await client.post(
            "/encode", content=body(), headers={"Origin": origin, "Authorization": AUTH}
        )
        assert post.status_code == 200 and post.headers["access-control-allow-origin"] == origin


# ---------------------------------------------------------------- the command


async def run_codec_server(*args: str, env: dict[str, str], timeout: float = 30) -> Result:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sessions.codec_server",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(**env),
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return Result(("codec_server", *args), proc.returncode, out.decode(), err.decode())


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({}, "error: SESSIONS_CODEC_AUTH is not set: whoever reaches the codec server could "),
        ({"SESSIONS_CODEC_AUTH": "   "}, "error: SESSIONS_CODEC_AUTH is not set: "),
        (
            {"SESSIONS_CODEC_AUTH": AUTH, "SESSIONS_CODEC_ALLOWED_HOSTS": "ok.example,http://x/"},
            "error: SESSIONS_CODEC_ALLOWED_HOSTS entry 2 must be a host name or an IP address",
        ),
        (
            {"SESSIONS_CODEC_AUTH": AUTH, "SESSIONS_CODEC_MAX_BODY_BYTES": "lots"},
            "error: SESSIONS_CODEC_MAX_BODY_BYTES must be a whole number of bytes, at least 1024",
        ),
    ],
    ids=["no-token", "blank-token", "bad-host", "bad-limit"],
)
async def test_it_will_not_start_without_a_token_or_with_a_bad_setting(
    env: dict[str, str], says: str
) -> None:
    result = await run_codec_server("--port", str(free_port()), env={KEYS_ENV: KEYS, **env})
    line = result.one_error_line()
    assert result.code == 2 and line.startswith(says), line
    if "is not set" in says:  # it says how to set it, and how to opt out
        assert "set SESSIONS_CODEC_AUTH to the Authorization header" in line
        assert "or SESSIONS_CODEC_AUTH=off to serve without one" in line
    assert KEYS.split(":", 1)[1] not in result.err


@pytest.mark.parametrize("auth", [AUTH, "off"])
async def test_the_command_serves_with_a_token_or_with_auth_off(auth: str) -> None:
    port = free_port()
    env = {
        KEYS_ENV: KEYS,
        "SESSIONS_CODEC_AUTH": auth,
        "SESSIONS_CODEC_ALLOWED_HOSTS": "codec.internal",
        "SESSIONS_CODEC_MAX_BODY_BYTES": str(LIMIT),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sessions.codec_server",
        "--port",
        str(port),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(**env),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": AUTH} if auth != "off" else {}
        async with httpx.AsyncClient(base_url=url, timeout=10, headers=headers) as client:
            await until_listening(client, proc)
            sealed = await client.post("/encode", content=body({"data": b64(SECRET.encode())}))
            assert sealed.status_code == 200, sealed.text
            opened = await client.post(
                "/decode",
                content=json.dumps(sealed.json()).encode(),
                headers={"Host": "codec.internal"},
            )
            assert base64.b64decode(opened.json()["payloads"][0]["data"]) == SECRET.encode()
            rebound = await client.post(
                "/decode",
                content=json.dumps(sealed.json()).encode(),
                headers={"Host": f"evil.example:{port}"},
            )
            assert_refused(rebound, 421)
            assert_refused(await client.post("/decode", content=b"x" * (LIMIT + 1)), 413)
            if auth != "off":
                assert_refused(
                    await client.post("/decode", content=b"{}", headers={"Authorization": "no"}),
                    401,
                )
    finally:
        proc.terminate()
        out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert SECRET.encode() not in out + err and b"Traceback" not in err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def until_listening(client: httpx.AsyncClient, proc: Any) -> None:
    for _ in range(200):
        assert proc.returncode is None, (await proc.stderr.read()).decode()
        with contextlib.suppress(httpx.TransportError):
            await client.post("/encode", content=body())
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the codec server did not start listening")
