"""One place that turns the environment into a Temporal client (`temporalio.envconfig`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig

from sessions.errors import ConfigError, TemporalUnreachable
from workflows.models import DEFAULT_TASK_QUEUE

DEFAULT_ADDRESS = "localhost:7233"


def task_queue(value: str | None = None) -> str:
    """Argument > `SESSIONS_TASK_QUEUE` > `sandbox-sessions`."""
    return value or os.environ.get("SESSIONS_TASK_QUEUE") or DEFAULT_TASK_QUEUE


def connect_config(
    *, address: str | None = None, namespace: str | None = None
) -> dict[str, Any]:
    """Keyword arguments for `Client.connect`: arguments over TEMPORAL_* env over profile file."""
    try:
        config: dict[str, Any] = dict(
            ClientConfig.load_client_connect_config(
                profile=os.environ.get("TEMPORAL_PROFILE"),
                config_file=os.environ.get("TEMPORAL_CONFIG_FILE"),
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
    """Connect with the pydantic data converter; an unreachable server is one clear error."""
    config = connect_config(address=address, namespace=namespace)
    try:
        return await Client.connect(
            **config,
            data_converter=pydantic_data_converter,
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
