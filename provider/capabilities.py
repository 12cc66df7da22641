"""E2B's capability profile: the seed's table, plus what a pool's template adds. Pure, no I/O."""

from __future__ import annotations

from provider.models import CapabilityProfile, PoolConfig

E2B_RUNTIME_KINDS: tuple[str, ...] = ("npm", "python-pip", "http", "mcp-server", "a2a-protocol")
E2B_REQUIREMENT_KINDS: tuple[str, ...] = (
    "long-running",
    "network-egress",
    "git",
    "full-history-clone",
)

__all__ = ["E2B_REQUIREMENT_KINDS", "E2B_RUNTIME_KINDS", "e2b_capabilities"]


def e2b_capabilities(pool: PoolConfig | None = None) -> CapabilityProfile:
    """The profile for `pool`: its `runtimeProvides` extend the runtime kinds (deduplicated,
    order kept), because a custom template can ship toolchains the base image lacks."""
    provides = pool.runtime_provides if pool is not None else []
    runtime_kinds = list(dict.fromkeys([*E2B_RUNTIME_KINDS, *provides]))
    return CapabilityProfile(
        transport_model="dial-in",
        supports_fs_snapshot=True,
        supports_pause_resume=True,
        supports_capacity_query=False,
        max_concurrent=None,
        max_session_duration_seconds=None,
        os="linux",
        arch="x86_64",
        idle_cost_model="zero",
        billing_model="wall-clock",
        supports_gpu=False,
        supports_custom_network_policy=False,
        egress_default="allow-all",
        runtime_kinds=runtime_kinds,
        requirement_kinds=list(E2B_REQUIREMENT_KINDS),
    )
