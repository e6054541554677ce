"""Requests to the models on the device, by name: which model serves, loaded on demand.

A request names a model by its name or one of its aliases; none named means the alias
"default" if a slot holds it, else the model loaded most recently (``StoreState.default``).
The ``sha256`` selector of older clients picks the active model with those bytes. A model not
resident loads first (``SlotRuntime.ensure_resident``) and the request reports the wait.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from agent.adapters import held_for
from agent.benchmark import BenchResult, run_benchmark
from agent.energy import EnergyTracker
from agent.errors import InvalidRequest, NoActiveModel, NotFound, WorkerFailed
from agent.limits import AgentLimits
from agent.recovery import SlotRecovery
from agent.residency import Loaded
from agent.runtimes.base import GenerationRequest, GenerationStats
from agent.store import Slot, StoreState


def served_names(state: StoreState) -> list[str]:
    return sorted({n for s in state.serving() for n in (s.name, *s.aliases)})


class Inference(SlotRecovery):
    limits: AgentLimits
    energy: EnergyTracker

    def resolve(self, model: str = "", sha256: str = "", fmt: str = "gguf") -> Slot:
        """The serving slot a request means (naming none: the default one, of format
        ``fmt`` if there is one). Raises NoActiveModel (nothing is served, or not those
        bytes) or NotFound (no such name or alias)."""
        state = self.store.read_state()
        if not state.serving():
            raise NoActiveModel("no model is loaded; deploy one first")
        if model:
            slot = state.named(model)
            if slot is None:
                raise NotFound(f"the model {model!r} does not exist on this device; it serves: "
                               f"{', '.join(served_names(state))}")
        elif sha256:
            slot = state.slot_of(sha256)
            if slot is None or not slot.serving:
                raise NoActiveModel(f"the model {sha256[:12]} is not loaded")
        else:
            slot = state.default(fmt) or state.default()
            assert slot is not None
        assert slot.active is not None
        if sha256 and slot.active.sha256 != sha256:
            raise NoActiveModel(f"the model {sha256[:12]} is not loaded as {model!r}")
        return slot

    def loaded(self, name: str | None = None) -> Loaded | None:
        """The worker of a slot (the default one when None), if resident."""
        if name is None:
            slot = self.store.read_state().default()
            name = slot.name if slot else ""
        return self._resident.get(name)

    def generate(
        self, prompt: str, max_tokens: int, temperature: float, sha256: str = ""
    ) -> Generator[tuple[str, Any], None, None]:
        return self.generate_request(
            GenerationRequest(prompt=prompt, max_tokens=max_tokens, temperature=temperature),
            sha256)

    def generate_request(
        self, request: GenerationRequest, sha256: str = "", adapter: str | None = None,
        model: str = "", on_start: Callable[[str, float], None] | None = None,
    ) -> Generator[tuple[str, Any], None, None]:
        """Yield ``("text", piece)``... then ``("done", GenerationStats)`` (first
        ``("started", prompt_tokens)`` when ``request.announce_prefill``); every request,
        whichever API it came by (gRPC, OpenAI HTTP, benchmark), is recorded in telemetry
        here. Closing the generator early cancels the generation (outcome "cancelled").
        ``adapter``: a LoRA adapter by name (None: the deployed one, "": the base alone);
        ``model``: a model name or alias ("": the default model); ``on_start(name, waited_s)``
        is called once the model is resident, before the generation starts (the model that
        serves and how long the request waited for it to load)."""
        self.limits.check_prompt(request.prompt, *(m.content for m in request.messages))
        request.check()
        slot = self.resolve(model, sha256)
        if slot.active is not None and slot.active.format != "gguf":
            raise InvalidRequest(f"{slot.name!r} is an {slot.active.format.upper()} model: "
                                 "it serves tensor inference (Open Inference Protocol), not "
                                 "text")
        with self.serving(slot.name):
            current, waited = self.ensure_resident(slot)
            if on_start is not None:
                on_start(slot.name, waited)
            record = current.record
            adapter_name = ""
            if record.format == "gguf":
                request = self.adapters.request(request, adapter, record.sha256)
                adapter_name = next((a.name for a in held_for(slot, record.sha256)
                                     if a.sha256 == request.adapter), "")
            stats: GenerationStats | None = None
            outcome = "error"
            joules_at_start = self.energy.joules()
            stream = current.worker.generate(request)
            try:
                with self.energy.busy():
                    for kind, value in stream:
                        if kind == "done":
                            stats = value
                            stats.energy_j = self.energy.joules() - joules_at_start
                            stats.energy_meter = self.energy.meter
                            stats.model, stats.sha256 = slot.name, record.sha256
                            stats.load_wait_s = waited
                            outcome = "cancelled" if value.finish_reason == "cancelled" else "ok"
                        yield kind, value
            except WorkerFailed:
                self._restart_after_crash(current)
                raise
            except GeneratorExit:
                outcome = "cancelled"
                stream.close()  # cancels the runtime and drains what is in flight
                raise
            finally:
                if stats is None and outcome == "cancelled":
                    stats = current.worker.cancelled_stats
                self.telemetry.append_generation(
                    record.sha256, record.variant, stats or GenerationStats(), outcome,
                    self.energy.meter, current.worker.peak_rss_bytes(), model=slot.name,
                    adapter=adapter_name, load_wait_ms=waited * 1000)

    def benchmark(self, runs: int, max_tokens: int, prompts: list[str]) -> BenchResult:
        """Run the prompt set ``runs`` times on the default model (agent.benchmark)."""
        slot = self.resolve()
        current, _ = self.ensure_resident(slot)
        return run_benchmark(current.record, current.worker, self.generate, runs, max_tokens,
                             prompts)

    def verify_output(self, prompt: str, max_tokens: int, sha256: str = "") -> dict[str, Any]:
        """Greedy tokens and the prompt's mean log-probability on a language model, and
        whether every logit was finite (``agent.runtimes.llama_check``)."""
        slot = self.resolve("", sha256)
        assert slot.active is not None
        if slot.active.format != "gguf":
            raise InvalidRequest("VerifyOutput checks language models (GGUF)")
        self.limits.check_prompt(prompt)
        with self.serving(slot.name):
            current, _ = self.ensure_resident(slot)
            result = self._call(current, "verify_output", prompt, max_tokens)
        return {**result, "sha256": current.record.sha256}

    def onnx_slot(self, name: str) -> Slot:
        state = self.store.read_state()
        slot = state.named(name)
        if slot is None or slot.active is None or slot.active.format != "onnx":
            raise NotFound(f"no ONNX model named {name!r} is loaded")
        return slot

    def infer(self, name: str, inputs: dict[str, Any], outputs: list[str]) -> dict[str, Any]:
        """Tensor inference on the ONNX model named ``name`` (or aliased so)."""
        slot = self.onnx_slot(name)
        with self.serving(slot.name):
            current, _ = self.ensure_resident(slot)
            return self._call(current, "infer", inputs, outputs)

    def model_metadata(self, name: str) -> dict[str, Any]:
        slot = self.onnx_slot(name)
        current, _ = self.ensure_resident(slot)
        meta: dict[str, Any] = current.worker.call("metadata")
        return meta

    def _call(self, current: Loaded, method: str, *args: Any) -> dict[str, Any]:
        """``method`` on the worker of ``current``; a worker that died is restarted."""
        try:
            with self.energy.busy():
                result: dict[str, Any] = current.worker.call(method, *args)
        except WorkerFailed:
            self._restart_after_crash(current)
            raise
        return result
