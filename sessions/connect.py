"""One place that turns the environment into a Temporal client (`temporalio.envconfig`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from temporalio.client import Client, Interceptor
from temporalio.envconfig import ClientConfig

from sessions.codec import data_converter
from sessions.errors import ConfigError, TemporalUnreachable
from telemetry.temporal import with_tracing
from workflows.models import DEFAULT_TASK_QUEUE

DEFAULT_ADDRESS = "localhost:7233"


def task_queue(value: str | None = None) -> str:
    """Argument > `SESSIONS_TASK_QUEUE` > `sandbox-sessions`."""
    return value or os.environ.get("SESSIONS_TASK_QUEUE") or DEFAULT_TASK_QUEUE


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
    config.setdefault("namespace", "default")
    if address:
        config["target_host"] = address
    if namespace:
        config["namespace"] = namespace
    return config


async def connect_temporal(
    *,
    address: str | None = None,
    namespace: str | None = None,
    interceptors: Sequence[Interceptor] = (),
    **kwargs: Any,
) -> Client:
    """Connect with the pydantic data converter (and the payload codec, when keys are set);
    an unreachable server is one clear error."""
    config = connect_config(address=address, namespace=namespace)
    converter = data_converter()  # encrypts payloads when SESSIONS_PAYLOAD_KEYS is set
    try:
        return await Client.connect(
            **config,
            data_converter=converter,
            interceptors=with_tracing(interceptors),
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
