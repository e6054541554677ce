"""`fleet deploy MODEL --adapter NAME`: a LoRA adapter to the devices where MODEL is active,
through the same recorded rollout as a model (waves, canaries, gates, approvals, trial
deadline, resume, abort: controller.services.deploying and rollout_runner).

Planning asks each device what it runs (controller.core.adapter_plan decides); a device the
rollout cannot ask is planned from the inventory and asked again at its turn
(controller.services.adapter_step). Each device's job carries its own base (the variant it
runs), persisted in the rollout row, so a resume loads the adapter on the same base. The
controller sends one copy to each site and the site's devices read it from each other, as
for a model (``--no-peers``: the controller sends it to every device).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from agent.contract import Capability, sha256_file
from controller.adapters.tables import Device
from controller.core.adapter_plan import (
    AdapterFile,
    AdapterTarget,
    DeviceNow,
    adapter_memory_bytes,
    plan_adapter,
)
from controller.core.models import ModelSpec
from controller.core.select import Request, variant_costs
from controller.core.steps import Step
from controller.errors import ArtifactError, DeviceError
from controller.services import lora_registry
from controller.services.context import Fleet, profile_from_probe
from controller.services.deploying import (
    DeployOptions,
    DeployReport,
    check_options,
    policy_of,
    record,
    run,
)
from controller.services.planning import with_local_hashes
from controller.services.ports import Artifact, DeviceJob


def deploy_adapter(fleet: Fleet, model: ModelSpec, adapter: str, devices: list[Device],
                   request: Request, options: DeployOptions | None = None,
                   on_job: Callable[[DeviceJob], None] = lambda job: None,
                   on_plan: Callable[[list[AdapterTarget]], None] = lambda targets: None
                   ) -> DeployReport:
    options = options or DeployOptions()
    check_options(options)
    entry = lora_registry.get(model.name, adapter)
    path = Path(entry.path)
    # hashed before any device is touched: a changed or damaged file stops here
    if not path.is_file() or sha256_file(path) != entry.sha256:
        raise ArtifactError(f"the kept file of adapter {adapter} ({path}) is missing or no "
                            f"longer has sha256 {entry.sha256[:12]}",
                            hint=f"add it again: `fleet adapter add {adapter} --base "
                            f"{model.name} FILE.gguf --replace`")
    file = AdapterFile(entry.name, model.name, entry.sha256, entry.size_bytes)
    hashed = with_local_hashes(fleet, model)
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(devices)))) as pool:
        now = list(pool.map(lambda d: device_now(fleet, hashed, d, request, file), devices))
    targets = plan_adapter(file, now)
    on_plan(targets)
    # a copy staged ahead (`--stage-only`) or registered on the base: a source at once
    held = {d.device for d in now if d.holds_file or d.has_adapter}
    jobs = _jobs(targets, file, str(path), request.ctx, held)
    policy = policy_of(model, request, options)
    rollout, log = record(fleet, f"{model.name}+{adapter}", jobs, devices, policy, options)
    return run(fleet, log, rollout, jobs, policy, options.progress, on_job,
               peer_progress=options.peer_progress)


def device_now(fleet: Fleet, model: ModelSpec, device: Device, request: Request,
               adapter: AdapterFile) -> DeviceNow:
    """What ``device`` runs, from its agent; from the inventory when it cannot be asked."""
    by_sha = {v.sha256: v for v in model.variants if v.sha256}
    costs = variant_costs(model, request)
    try:
        with fleet.client(device, timeout_s=5.0) as client:
            version = client.get_version()
            store = client.get_store()
            models = client.list_models()
            probed = client.get_profile()
    except DeviceError as exc:
        variant = next((v for v in model.variants if v.name == device.variant), None)
        profile = fleet.declared_profile(device)
        if device.model != model.name or variant is None or not device.sha256:
            return DeviceNow(device.name, error=f"{exc.message} (the inventory knows no "
                             f"{model.name} on it)")
        return DeviceNow(device.name, model.name, variant.name, device.sha256, variant.format,
                         costs[variant.name].total, profile.usable_bytes if profile else 0)
    variant = by_sha.get(store.active_sha256)
    if variant is None and device.sha256 == store.active_sha256 and device.model == model.name:
        variant = next((v for v in model.variants if v.name == device.variant), None)
    held = [m for m in models if m.format == "lora"]
    active = next((m for m in models if m.sha256 == store.active_sha256 and m.format != "lora"),
                  None)
    usable = profile_from_probe(fleet, device, probed).usable_bytes
    capable = version is not None and Capability.LORA_ADAPTERS.value in version.capabilities
    others = sum(adapter_memory_bytes(m.size_bytes) for m in held
                 if m.sha256 != adapter.sha256)
    if variant is None:
        running = device.model if device.sha256 == store.active_sha256 else ""
        return DeviceNow(device.name, running, "", store.active_sha256, lora_capable=capable)
    # what the agent's memory guard counts for the base: its own figure, else the
    # selector's estimate at the context it was loaded with
    base_bytes = (active.memory_bytes if active and active.memory_bytes else
                  variant_costs(model, replace(request, ctx=active.n_ctx))[variant.name].total
                  if active and active.n_ctx else costs[variant.name].total)
    return DeviceNow(device.name, model.name, variant.name, store.active_sha256,
                     variant.format, base_bytes, usable, others,
                     any(m.sha256 == adapter.sha256 for m in held),
                     adapter.sha256 in store.blobs, capable)


def _jobs(targets: list[AdapterTarget], file: AdapterFile, path: str, ctx: int,
          held: Collection[str] = ()) -> list[DeviceJob]:
    jobs = []
    for position, t in enumerate(targets):
        job = DeviceJob(device=t.device, position=position, wave=0, step=Step.PLANNED,
                        artifact=None, reason=t.reason, hint=t.hint)
        if t.skipped:
            job.step = Step.SKIPPED
        else:
            job.artifact = Artifact(f"{file.base}+{file.name}", t.base_variant, "lora",
                                    file.sha256, file.size_bytes, path, t.base_sha256)
            job.n_ctx, job.memory_bytes, job.choice = ctx, t.memory_bytes, t.reason
            job.held = t.device in held
            job.reason = "waiting for its turn"
        jobs.append(job)
    return jobs
