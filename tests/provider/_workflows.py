"""A tiny workflow that runs one sandbox activity with its production options (tests only)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.sandbox import PROVISION, SandboxActivities
    from provider.models import ProvisionInput, ProvisionResult


@workflow.defn(name="ProviderTestProvision")
class ProvisionWorkflow:
    @workflow.run
    async def run(self, input: ProvisionInput) -> ProvisionResult:
        return await workflow.execute_activity_method(
            SandboxActivities.provision_sandbox, input, **PROVISION
        )
