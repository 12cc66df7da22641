"""One place that turns the environment into a Temporal client (`temporalio.envconfig`).

The worker and the `sessions` CLI both connect through `connect_temporal`, so they agree on the
address, the namespace, TLS and API keys (Temporal's own `TEMPORAL_*` variables and profiles),
and on the data converter: pydantic, encrypting every payload when `SESSIONS_PAYLOAD_KEYS` is set.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from pydantic import SecretStr
from temporalio.client import Client, Interceptor
from temporalio.envconfig import ClientConfig

from common.codec import data_converter
from common.errors import ConfigError, TemporalUnreachable

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_NAMESPACE",
    "connect_cause",
    "connect_config",
    "connect_temporal",
    "unreachable_message",
]

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"


def connect_config(*, address: str | None = None, namespace: str | None = None) -> dict[str, Any]:
    """Keyword arguments for `Client.connect`: arguments over TEMPORAL_* env over profile file."""
    # compose and Kubernetes pass an absent secret as an empty variable: no key (and so no
    # forced TLS), not an empty one.
    env = {k: v for k, v in os.environ.items() if v or not k.startswith("TEMPORAL_")}
    try:
        config: dict[str, Any] = dict(
            ClientConfig.load_client_connect_config(
                profile=env.get("TEMPORAL_PROFILE"),
                config_file=env.get("TEMPORAL_CONFIG_FILE"),
                override_env_vars=env,
            )
        )
    except Exception as err:  # the bridge raises plain RuntimeErrors for bad files
        raise ConfigError(f"cannot read Temporal configuration: {err}") from None
    config.setdefault("target_host", DEFAULT_ADDRESS)
    config.setdefault("namespace", DEFAULT_NAMESPACE)
    if address:
        config["target_host"] = address
    if namespace:
        config["namespace"] = namespace
    return config


async def connect_temporal(
    *,
    address: str | None = None,
    namespace: str | None = None,
    payload_keys: SecretStr | None = None,
    interceptors: Sequence[Interceptor] = (),
    **kwargs: Any,
) -> Client:
    """Connect with the pydantic data converter, encrypting with `payload_keys`
    (`SESSIONS_PAYLOAD_KEYS`) when given; an unreachable server is one clear error naming
    the address."""
    config = connect_config(address=address, namespace=namespace)
    keys = payload_keys.get_secret_value() if payload_keys is not None else None
    try:
        return await Client.connect(
            **config,
            data_converter=data_converter(keys),
            interceptors=list(interceptors),
            **kwargs,
        )
    except RuntimeError as err:
        raise TemporalUnreachable(unreachable_message(config["target_host"], err)) from None


_CAUSES = (
    (re.compile(r"connection refused", re.I), "connection refused"),
    (
        re.compile(
            r"dns error|failed to lookup address|name or service not known|nodename nor servname"
            r"|no address associated|name resolution|temporary failure in name",
            re.I,
        ),
        "name not resolved",
    ),
    (re.compile(r"timed? ?out|deadline", re.I), "timed out"),
    (re.compile(r"connection reset|broken pipe", re.I), "connection reset"),
    (re.compile(r"network is unreachable|no route to host", re.I), "network unreachable"),
    (re.compile(r"certificate|\btls\b|\bssl\b|handshake", re.I), "TLS handshake failed"),
    (re.compile(r"HTTP status code (\d+)", re.I), "not a Temporal frontend: HTTP {0}"),
    (re.compile(r"invalid uri|invalid authority|invalid port", re.I), "not a host:port"),
)
"""The OS's or the transport's cause inside the SDK's connect error, in a few words."""


def connect_cause(err: BaseException | str) -> str:
    """The SDK's connect error (`tonic::transport::Error(Transport, ConnectError(...))`, a gRPC
    status, ...) reduced to its cause: "connection refused", "timed out", "name not
    resolved", ... or, when none is recognised, the error's first words."""
    text = str(err)
    for pattern, cause in _CAUSES:
        match = pattern.search(text)
        if match:
            return cause.format(*match.groups())
    text = text.split("Failed client connect:", 1)[-1]
    text = re.sub(r"\b\w+(::\w+)+\b|[(){}\[\]]", " ", text)  # Rust paths, nesting
    return " ".join(text.split())[:120] or "no cause given"


def unreachable_message(target: str, err: BaseException | str) -> str:
    return f"cannot reach Temporal at {target}: is `sessions dev` running? ({connect_cause(err)})"
