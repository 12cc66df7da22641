"""One place that turns the environment into a Temporal client (`temporalio.envconfig`).

The worker and the `sessions` CLI both connect through `connect_temporal`, so they agree on the
address, the namespace, TLS and API keys (Temporal's own `TEMPORAL_*` variables and profiles),
and on the data converter: pydantic, encrypting every payload when `SESSIONS_PAYLOAD_KEYS` is set.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from pydantic import SecretStr
from temporalio.client import Client, Interceptor
from temporalio.envconfig import ClientConfig

from common.codec import data_converter
from common.errors import ConfigError, TemporalUnreachable

__all__ = ["DEFAULT_ADDRESS", "DEFAULT_NAMESPACE", "connect_config", "connect_temporal"]

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
        raise TemporalUnreachable(
            f"cannot reach Temporal at {config['target_host']} "
            f"(namespace {config['namespace']}): {_first_line(err)}"
        ) from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
