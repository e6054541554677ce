"""Invariants of the selector, over random devices and ladders (hypothesis)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.models import MIB, Architecture, ModelSpec, Profile, Variant
from controller.core.select import Choice, Request, choose, choose_many

ARCH = Architecture(n_layer=24, n_embd=2048, n_head=16, n_head_kv=4, n_ctx_train=8192,
                    n_vocab=32000, params=1_500_000_000)

variant_st = st.builds(
    lambda i, size, kld: Variant(name=f"v{i}", format="gguf", quant="Q4_K_M",
                                 size_bytes=size, bits_per_weight=4.9, quality_kld=kld,
                                 quality_source="test", source="local://x/y"),
    st.integers(0, 10_000),
    st.integers(50 * MIB, 8000 * MIB),
    st.floats(0.0, 1.0, allow_nan=False),
)
ladder_st = st.lists(variant_st, min_size=1, max_size=8, unique_by=lambda v: v.name).map(
    lambda vs: ModelSpec(name="m", title="m", arch=ARCH, variants=tuple(vs)))
profile_st = st.builds(
    lambda ram, reserve, bw, watts: Profile(
        name="p", title="p", kind="device", arch="aarch64", cores=4, isa=(),
        ram_bytes=ram * MIB, reserve_bytes=min(reserve, ram - 1) * MIB, unified_memory=False,
        bandwidth_gbps=bw, bandwidth_measured_gbps=0.0, load_w=watts),
    st.integers(256, 65536), st.integers(0, 4096), st.floats(1.0, 400.0), st.floats(0.0, 60.0),
)
ctx_st = st.sampled_from([256, 512, 2048, 4096])
prefer_st = st.sampled_from(["quality", "max-quality", "speed", "energy"])


@settings(max_examples=300, deadline=None)
@given(ladder_st, profile_st, ctx_st, prefer_st)
def test_never_picks_a_variant_that_does_not_fit(model: ModelSpec, profile: Profile, ctx: int,
                                                 prefer: str) -> None:
    choice = choose(model, profile, Request(ctx=ctx, prefer=prefer))
    if choice.chosen is not None:
        assert choice.chosen.memory.total <= profile.usable_bytes
    else:
        assert all(c.memory.total > profile.usable_bytes for c in choice.candidates)


@settings(max_examples=300, deadline=None)
@given(ladder_st, profile_st, st.integers(0, 32768), ctx_st)
def test_more_ram_never_lowers_quality(model: ModelSpec, profile: Profile, extra_mib: int,
                                       ctx: int) -> None:
    # max-quality only: the default may trade quality for speed once a faster variant fits
    small = choose(model, profile, Request(ctx=ctx, prefer="max-quality"))
    big = choose(model, replace(profile, ram_bytes=profile.ram_bytes + extra_mib * MIB),
                 Request(ctx=ctx, prefer="max-quality"))
    if small.chosen is not None:
        assert big.chosen is not None
        assert big.chosen.variant.quality_kld <= small.chosen.variant.quality_kld


@settings(max_examples=300, deadline=None)
@given(ladder_st, profile_st, st.floats(0.0, 200.0), st.floats(0.0, 200.0), ctx_st, prefer_st)
def test_stricter_min_speed_never_yields_a_slower_pick(model: ModelSpec, profile: Profile,
                                                       a: float, b: float, ctx: int,
                                                       prefer: str) -> None:
    loose, strict = sorted((a, b))
    lo = choose(model, profile, Request(ctx=ctx, min_tokens_per_s=loose, prefer=prefer))
    hi = choose(model, profile, Request(ctx=ctx, min_tokens_per_s=strict, prefer=prefer))
    if hi.chosen is not None:
        assert hi.chosen.tokens_per_s >= strict
        assert lo.chosen is not None
        assert hi.chosen.tokens_per_s >= lo.chosen.tokens_per_s or (
            hi.chosen.variant == lo.chosen.variant)


@settings(max_examples=300, deadline=None)
@given(ladder_st, profile_st, ctx_st)
def test_default_pick_is_never_dominated(model: ModelSpec, profile: Profile, ctx: int) -> None:
    """No fitting variant is both faster and of higher quality than the default pick."""
    choice = choose(model, profile, Request(ctx=ctx))
    if choice.chosen is None:
        return
    won = choice.chosen
    for c in choice.candidates:
        if c.fits and c is not won:
            assert not (c.tokens_per_s > won.tokens_per_s and c.kld < won.kld), (c, won)


@settings(max_examples=300, deadline=None)
@given(ladder_st, profile_st, ctx_st)
def test_default_pick_reaches_the_floor_when_a_decent_variant_does(
        model: ModelSpec, profile: Profile, ctx: int) -> None:
    from controller.core.objective import FLOOR_TPS, LARGE_KLD

    choice = choose(model, profile, Request(ctx=ctx))
    usable = [c for c in choice.candidates
              if c.fits and c.kld < LARGE_KLD and c.tokens_per_s >= FLOOR_TPS]
    if usable:
        assert choice.chosen is not None and choice.chosen.tokens_per_s >= FLOOR_TPS


def _said(choice: Choice) -> tuple[object, ...]:
    return (choice.chosen and choice.chosen.variant.name, choice.reason,
            tuple((c.variant.name, c.fits, c.reason) for c in choice.candidates))


@settings(max_examples=150, deadline=None)
@given(ladder_st, st.lists(profile_st, min_size=1, max_size=4),
       st.lists(st.tuples(st.integers(0, 3), st.integers(256, 65536)), min_size=1, max_size=12),
       ctx_st, prefer_st, st.sampled_from([(), ("llama.cpp",), ("onnxruntime",)]))
def test_fleet_plan_matches_one_device_at_a_time(
        model: ModelSpec, kinds: list[Profile], devices: list[tuple[int, int]], ctx: int,
        prefer: str, runtimes: tuple[str, ...]) -> None:
    # choose_many shares picks between devices of a kind with the same variants fitting and
    # explains lazily: every device must still get what choose alone gives it, word for word
    fleet = [(f"d{i}", replace(kinds[k % len(kinds)], ram_bytes=ram * MIB, runtimes=runtimes))
             for i, (k, ram) in enumerate(devices)]
    req = Request(ctx=ctx, prefer=prefer)
    planned = choose_many(model, fleet, req)
    for (name, profile), got in zip(fleet, planned, strict=True):
        assert _said(got) == _said(choose(model, profile, req, name))
