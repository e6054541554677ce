"""Several models per device, controller side (pure parts): the memory a new model may use
beside the models a device keeps, the signed placement keys and who gets them, the slot a
rollout reads, the options a resumed rollout keeps, and the step machine against an agent of
several models (in-memory ports: tests/unit/fakes.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.contract import AGENT_CAPABILITIES, RevertCause
from agent.rpc import agent_pb2 as pb
from controller.adapters.data_files import load_model, load_profile
from controller.adapters.device_link import load_request, manifest_fields, store_view
from controller.core.compat import MULTI_MODEL, AgentVersion
from controller.core.models import MIB
from controller.core.select import Request, choose
from controller.core.steps import Step
from controller.errors import UsageError
from controller.services.device_run import DeviceRun, RunSettings
from controller.services.placement import check_aliases, for_agent, settled
from controller.services.planning import kept_beside
from controller.services.ports import (
    Artifact,
    DeviceJob,
    LoadOrder,
    ModelView,
    Placement,
    SlotView,
    StoreView,
)
from controller.services.rollout_runner import Policy
from tests.unit.fakes import FakeDevice, FakeFleet

GIB = 1024 * MIB
NEW = Artifact("m", "q4", "gguf", "a" * 64, 1000, "/models/m-q4.gguf")
OTHER = SlotView("clf", active="c" * 64, memory_bytes=40 * MIB, resident=True,
                 aliases=("classify",))
MULTI = AgentVersion("0.3.0", 2, frozenset({*(c.value for c in AGENT_CAPABILITIES),
                                            MULTI_MODEL}), 0.0)
SINGLE = AgentVersion("0.2.0", 2, frozenset(c.value for c in AGENT_CAPABILITIES
                                            if c.value != MULTI_MODEL), 0.0)


# -- the memory budget beside the models a device keeps ----------------------------------------
def test_a_model_gets_what_the_models_it_joins_leave() -> None:
    model, profile = load_model("phi3-mini"), load_profile("rpi5-8gb")
    alone = choose(model, profile, Request(ctx=4096, prefer="max-quality"), "d")
    kept = (("llama-3.2-1b", 3 * GIB),)
    beside = choose(model, profile, Request(ctx=4096, prefer="max-quality", resident=kept),
                    "d")
    assert alone.chosen is not None and beside.chosen is not None
    left = profile.usable_bytes - 3 * GIB
    assert beside.chosen.memory.total <= left < alone.chosen.memory.total
    assert beside.chosen.variant.name != alone.chosen.variant.name
    assert "beside llama-3.2-1b (3,072 MiB)" in beside.reason
    too_big = next(c for c in beside.candidates if not c.fits)
    assert "beside llama-3.2-1b" in too_big.reason and "of the models it keeps" in too_big.reason


def test_nothing_fits_beside_says_how_much_each_holds_and_the_way_out() -> None:
    profile = load_profile("rpi5-4gb")
    kept = (("llama-3.2-1b", 2 * GIB), ("clf", 1 * GIB))
    choice = choose(load_model("phi3-mini"), profile, Request(ctx=4096, resident=kept), "d")
    assert choice.chosen is None
    reason = choice.reason
    assert "nothing fits beside the models it keeps" in reason
    assert "llama-3.2-1b (2,048 MiB), clf (1,024 MiB)" in reason
    assert f"of {profile.usable_bytes / MIB:,.0f} MiB usable" in reason
    assert "--replace" in reason and "llama-3.2-1b holds the most" in reason
    # the same device with --replace: nothing kept, a variant fits again
    alone = choose(load_model("phi3-mini"), profile, Request(ctx=4096), "d")
    assert alone.chosen is not None


def test_a_new_variant_of_a_model_replaces_its_own_slot_and_replace_keeps_nothing() -> None:
    models = (("m", 3 * GIB), ("clf", 40 * MIB))
    assert kept_beside(models, "m", replace=False) == (("clf", 40 * MIB),)
    assert kept_beside(models, "m", replace=True) == ()
    assert kept_beside((), "m", replace=False) == ()  # an agent of one model: it replaces


def test_plans_of_a_fleet_with_models_kept_choose_per_device() -> None:
    from controller.core.select import choose_many
    model, profile = load_model("phi3-mini"), load_profile("rpi5-8gb")
    req = Request(ctx=4096, prefer="max-quality", resident=(("x", 3 * GIB),))
    [many] = choose_many(model, [("d", profile)], req)
    one = choose(model, profile, req, "d")
    assert many.chosen and one.chosen and many.chosen.variant == one.chosen.variant


# -- what an agent is told -------------------------------------------------------------------
def _signer(seen: list[dict[str, Any]]) -> Any:
    def sign(fields: dict[str, Any]) -> tuple[bytes, bytes]:
        seen.append(fields)
        return json.dumps(fields, sort_keys=True).encode(), b"sig"
    return sign


def test_an_agent_of_one_model_gets_todays_manifest() -> None:
    seen: list[dict[str, Any]] = []
    request = load_request(LoadOrder(NEW, 512, 10, trial_seconds=60), _signer(seen))
    assert not {"aliases", "replace", "pinned"} & set(seen[0])
    assert list(request.aliases) == [] and not request.replace and not request.pinned


def test_the_placement_is_signed_and_sent_alike() -> None:
    seen: list[dict[str, Any]] = []
    order = LoadOrder(NEW, 512, 10, trial_seconds=60,
                      placement=Placement(("zeta", "assistant"), replace=False, pinned=True))
    request = load_request(order, _signer(seen))
    assert seen[0]["aliases"] == ["assistant", "zeta"]  # sorted, as the agent compares
    assert seen[0]["replace"] is False and seen[0]["pinned"] is True
    assert list(request.aliases) == ["assistant", "zeta"] and request.pinned
    assert manifest_fields(order) == seen[0]


def test_aliases_and_pin_are_refused_for_an_agent_of_one_model() -> None:
    told, why, hint = for_agent("kiosk-1", SINGLE, Placement(("assistant",), pinned=True))
    assert told is None and "holds one model at a time" in why and "--alias assistant" in why
    assert "--pin" in why and "fleet device upgrade kiosk-1" in hint
    assert for_agent("kiosk-1", SINGLE, Placement(replace=True)) == (None, "", "")
    assert for_agent("kiosk-1", SINGLE, Placement()) == (None, "", "")  # replaces, as today
    asked = Placement(("assistant",), pinned=True)
    assert for_agent("kiosk-1", MULTI, asked) == (asked, "", "")


@pytest.mark.parametrize("bad", ["", "two words", "m+lora", "-x", "m"])
def test_bad_aliases_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError):
        check_aliases("m", (bad,))


def test_aliases_are_sorted_without_repeats() -> None:
    assert check_aliases("m", ("b", "a", "b")) == ("a", "b")


# -- the slot a rollout reads ------------------------------------------------------------------
def test_the_store_is_read_through_the_slot_of_the_model() -> None:
    answer = pb.GetStoreResponse(
        active_sha256=OTHER.active, memory_budget_bytes=GIB, slots=[
            pb.ModelSlot(name="clf", active_sha256=OTHER.active, memory_bytes=OTHER.memory_bytes,
                         aliases=["classify"], resident=True),
            pb.ModelSlot(name="m", active_sha256=NEW.sha256, on_trial=True,
                         previous_sha256="b" * 64, reverted_sha256="d" * 64,
                         reverted_cause=pb.REVERT_CAUSE_CRASH)])
    view = store_view(answer)
    assert view.memory_budget_bytes == GIB and len(view.slots) == 2
    mine = view.for_model("m")
    assert mine.active == NEW.sha256 and mine.on_trial and mine.previous == "b" * 64
    assert mine.reverted_cause is RevertCause.CRASH
    assert view.for_model("new-one").active == ""  # not on the device yet
    assert [s.name for s in view.others("m")] == ["clf"]
    single = StoreView(active="x")
    assert single.for_model("m") is single  # an agent of one model: its single fields


def test_settled_means_active_committed_and_placed_as_asked() -> None:
    slot = SlotView("m", active=NEW.sha256, aliases=("assistant",))
    store = StoreView(slots=(slot, OTHER))
    assert settled(store, "m", NEW.sha256, Placement(("assistant",)))
    assert not settled(store, "m", NEW.sha256, Placement(("helper",)))  # alias to move
    assert not settled(store, "m", NEW.sha256, Placement(pinned=True))
    assert not settled(store, "m", NEW.sha256, Placement(replace=True))  # clf still runs
    assert settled(StoreView(active=NEW.sha256), "m", NEW.sha256, None)


# -- a resumed rollout keeps its options -------------------------------------------------------
def test_the_placement_survives_the_rollout_log() -> None:
    policy = Policy(aliases=("assistant",), replace=True, pinned=True)
    again = Policy.from_dict(json.loads(json.dumps(policy.to_dict())))
    assert again.placement == Placement(("assistant",), True, True)
    old = {k: v for k, v in policy.to_dict().items()
           if k not in ("aliases", "replace", "pinned")}
    assert Policy.from_dict(old).placement == Placement()  # recorded before these existed


# -- the step machine against an agent of several models ---------------------------------------
class SlotDevice(FakeDevice):
    """A FakeDevice whose agent holds ``clf`` beside whatever model it loads, and reports
    slots; it remembers each load order."""

    orders: list[LoadOrder]

    def store(self) -> StoreView:
        single = super().store()
        mine = SlotView(NEW.model, active=single.active, previous=single.previous,
                        on_trial=single.on_trial, reverted=single.reverted,
                        reverted_cause=single.reverted_cause)
        return StoreView(active=single.active, blobs=single.blobs, incoming_dir="/in",
                         disk_free_bytes=10**9, slots=(OTHER, mine))

    def load(self, order: LoadOrder) -> None:
        self.orders.append(order)
        super().load(order)


REASONS: list[str] = []


def _run(device: FakeDevice, placement: Placement) -> DeviceJob:
    job = DeviceJob(device="d1", position=0, wave=0, step=Step.PLANNED, artifact=NEW,
                    n_ctx=512, memory_bytes=10, choice="fits best")
    REASONS.clear()
    return DeviceRun("r1", job, FakeFleet([device]).connect,
                     lambda j, r: REASONS.append(j.reason),
                     RunSettings(placement=placement)).run()


def test_a_model_deployed_beside_another_is_loaded_with_its_placement() -> None:
    device = SlotDevice("d1", agent=MULTI)
    device.orders = []
    job = _run(device, Placement(("assistant",)))
    assert job.step is Step.COMMITTED, job.reason
    assert device.orders[0].placement == Placement(("assistant",))
    assert any(r.startswith("loaded on trial beside the other models, as assistant")
               for r in REASONS), REASONS


def test_an_agent_of_one_model_refuses_aliases_before_anything_is_sent() -> None:
    device = FakeDevice("d1", active=ModelView("m", "q8", "b" * 64), blobs={"b" * 64},
                        agent=SINGLE)
    job = _run(device, Placement(("assistant",)))
    assert job.step is Step.FAILED and "fleet device upgrade d1" in job.hint
    assert "upload" not in device.calls and "load" not in device.calls


def test_an_agent_of_one_model_replaces_and_says_so() -> None:
    device = FakeDevice("d1", active=ModelView("m", "q8", "b" * 64), blobs={"b" * 64},
                        agent=SINGLE)
    job = _run(device, Placement())
    assert job.step is Step.COMMITTED
    assert any("in place of its model (its agent holds one model at a time)" in r
               for r in REASONS), REASONS
    assert "it replaced the model the device ran" in job.reason
    assert "fleet device upgrade d1" in job.reason
    assert device.active is not None and device.active.sha256 == NEW.sha256


def test_a_model_already_active_is_reloaded_only_to_move_an_alias() -> None:
    device = SlotDevice("d1", agent=MULTI, active=ModelView("m", "q4", NEW.sha256),
                        blobs={NEW.sha256})
    device.orders = []
    assert _run(device, Placement()).step is Step.UNCHANGED
    assert device.orders == []
    job = _run(device, Placement(("assistant",)))
    assert job.step is Step.COMMITTED and device.orders[0].placement == Placement(
        ("assistant",))


# -- the set of models the controller keeps per device -----------------------------------------
def test_a_commit_beside_moves_aliases_and_replace_leaves_one() -> None:
    from controller.core.device_models import DeviceModel, committed, describe, rolled_back
    clf = DeviceModel("clf", "f32", "c", ("assistant", "classify"))
    old = DeviceModel("m", "q8", "b")
    new = DeviceModel("m", "q4", "a", ("assistant",), pinned=True, resident=True)
    after = committed([clf, old], new, replace_others=False)
    assert after == [DeviceModel("clf", "f32", "c", ("classify",)), new]
    assert committed([clf, old], new, replace_others=True) == [new]
    assert rolled_back(after, "m", old) == [after[0], old]
    assert rolled_back(after, "m", None) == [after[0]]
    assert describe(new) == "m q4 (assistant, pinned, resident)"


# -- the collector reads every model a device runs -----------------------------------------
class _Agent:
    """GetTelemetry and ListModels of an agent running tiny-llama and a classifier beside it;
    ``records`` new requests since the cursor."""

    def __init__(self, records: int) -> None:
        self.records = records
        self.listed = 0

    def telemetry_since(self, after: int, after_s: int, limit: int, timeout: float
                        ) -> pb.GetTelemetryResponse:
        recs = [pb.RequestRecord(seq=after + i + 1, sha256="a" * 64, model="assistant",
                                 load_wait_ms=12.5) for i in range(self.records)]
        return pb.GetTelemetryResponse(
            records=recs, epoch="e1", sample_epoch="s1", last_seq=after + self.records,
            sample=pb.DeviceSample(active_sha256="a" * 64))

    def list_models(self, timeout: float | None = None) -> list[pb.ModelInfo]:
        self.listed += 1
        return [pb.ModelInfo(name="tiny-llama", variant="q4", sha256="a" * 64, active=True,
                             aliases=["assistant"], resident=True, memory_bytes=10),
                pb.ModelInfo(name="clf", variant="f32", sha256="c" * 64, active=True,
                             pinned=True, last_used_at=5.0),
                pb.ModelInfo(name="tiny-llama", variant="q8", sha256="b" * 64)]


def test_the_collector_reads_every_model_when_they_may_have_changed() -> None:
    import time as clock

    from controller.adapters.tables import Device
    from controller.core.telemetry_records import Cursors, ModelSeen
    from controller.services.collecting import _contact
    device = Device(name="k1", host="h", model="clf", variant="f32", sha256="c" * 64)
    known = Cursors("e1", 3, "s1", 0, ModelSeen("a" * 64, "tiny-llama", "q4"))
    idle, busy = _Agent(0), _Agent(2)
    got = _contact(idle, device, known, clock.monotonic(), 5.0)  # type: ignore[arg-type]
    assert idle.listed == 0 and got.models is None  # nothing changed: not asked
    got = _contact(busy, device, known, clock.monotonic(), 5.0)  # type: ignore[arg-type]
    assert busy.listed == 1 and got.models is not None
    assert [(m.name, m.aliases, m.pinned, m.resident) for m in got.models] == [
        ("clf", (), True, False), ("tiny-llama", ("assistant",), False, True)]
    assert [(r.model, r.load_wait_ms) for r in got.requests] == [("assistant", 12.5)] * 2
    _contact(busy, device, known, clock.monotonic(), 5.0, models_due=False)  # type: ignore[arg-type]
    assert busy.listed == 1  # requests, but read less than MODELS_EVERY_S ago
    first = _contact(idle, device, Cursors(), clock.monotonic(), 5.0)  # type: ignore[arg-type]
    assert idle.listed == 1 and first.models is not None
    # of two active models, the one the fleet deployed (clf) decides: deployed, not drifted
    assert first.live.active is not None and first.live.active.name == "clf"
    assert first.live.state == "deployed"


def test_stage_only_takes_no_placement() -> None:
    from controller.services.deploying import DeployOptions, check_options
    for options in (DeployOptions(stage_only=True, aliases=("assistant",)),
                    DeployOptions(stage_only=True, replace=True),
                    DeployOptions(stage_only=True, pinned=True)):
        with pytest.raises(UsageError, match="--stage-only activates nothing"):
            check_options(options)
    check_options(DeployOptions(aliases=("assistant",), replace=True, pinned=True))


def test_a_new_model_given_up_keeps_the_model_serving_by_default() -> None:
    """AbortTrial of a model new to the device names what serves by default (another
    model): its row stays as it was, with its aliases and memory, and appears once."""
    from controller.core.device_models import DeviceModel, rolled_back

    llama = DeviceModel("tiny-llama", "q2_k", "a" * 64, ("assistant",), True, True, False, 90)
    nan = DeviceModel("tiny-nan", "f16", "b" * 64, (), False, True, True, 200)
    back = DeviceModel("tiny-llama", "q2_k", "a" * 64, resident=True)
    assert rolled_back([llama, nan], "tiny-nan", back) == [llama]
    other = DeviceModel("tiny-llama", "q4_k_m", "c" * 64, resident=True)
    assert rolled_back([llama, nan], "tiny-nan", other) == [other]
    assert rolled_back([llama, nan], "tiny-nan", None) == [llama]
