"""Telemetry at fleet scale: 1,000 devices served by a load generator speaking the agent's real
telemetry RPCs (a few processes, each running 250 grpc.aio servers, one per device identity,
with its own request and sample logs), collected by the real collector into SQLite.

Prints:
- one collector pass over every device in steady state (each device has a few new records and
  a sample since the last pass), against the 5 s default interval;
- a refresh of the dashboard's fleet view from the database (the read model the app builds, and
  the Textual table filled with it), against a plain Rich table render of the same rows;
- storage per device-day: a day of traffic at 1 request/min and a sample every 10 s for a few
  devices, collected, vacuumed, divided.

Usage: python bench/telemetry_scale.py [--devices 1000] [--procs 4] [--passes 3]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing as mp
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

SHA = "ab" * 32
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # no GOAWAY notices when the servers stop


def _serve(first: int, count: int, per_call: int, day: bool, ports: Any, stop: Any) -> None:
    """A load generator process: ``count`` device identities, one aio server each."""
    import grpc

    from agent.rpc import agent_pb2 as pb
    from agent.rpc import agent_pb2_grpc as pb_grpc

    class Device(pb_grpc.AgentServiceServicer):  # type: ignore[misc]
        def __init__(self, index: int) -> None:
            self.index = index
            self.records: list[Any] = []
            self.samples: list[Any] = []
            self.t0 = time.time() - 86400 if day else time.time()
            if day:  # a day of traffic: 1 request a minute, a sample every 10 s
                self._add(1440, 8640, span=86400.0)

        def _add(self, n_records: int, n_samples: int, span: float = 1.0) -> None:
            base_r, base_s = len(self.records), len(self.samples)
            for i in range(n_records):
                ts = self.t0 + (i + 0.5) * span / max(1, n_records)
                self.records.append(pb.RequestRecord(
                    seq=base_r + i + 1, timestamp=ts if day else time.time(), sha256=SHA,
                    variant="q4_k_m", ttft_ms=80.0 + (i * 7919 % 400), total_ms=900.0,
                    prompt_tokens=60, completion_tokens=48,
                    decode_tokens_per_s=8.0 + (i * 104729 % 50) / 10, outcome="ok",
                    energy_j=12.0, joules_per_token=0.25, energy_meter="pi5-pmic",
                    peak_rss_bytes=2_500_000_000, prefill_tokens_per_s=40.0))
            for i in range(n_samples):
                ts = self.t0 + (i + 0.5) * span / max(1, n_samples)
                self.samples.append(pb.DeviceSample(
                    seq=base_s + i + 1, timestamp=ts if day else time.time(), interval_s=10.0,
                    cpu_percent=55.0, ram_used_bytes=3_000_000_000, worker_crashes=0,
                    ram_total_bytes=8_000_000_000, temperatures_c={"cpu-thermal": 61.5},
                    power_w=6.1, energy_meter="pi5-pmic", energy_measured=True,
                    energy_j=61.0, requests_total=base_r + n_records, cpu_freq_mhz=2400,
                    cpu_max_freq_mhz=2400, active_sha256=SHA))

        async def ListModels(self, request: Any, context: Any) -> Any:
            return pb.ListModelsResponse(models=[pb.ModelInfo(
                name="phi3-mini", variant="q4_k_m", sha256=SHA, format="gguf", active=True,
                state="loaded")])

        async def GetProfile(self, request: Any, context: Any) -> Any:
            return pb.GetProfileResponse(profile=pb.HardwareProfile(
                profile="rpi5-8gb", arch="aarch64", cores=4, ram_total_bytes=8 << 30))

        async def GetTelemetry(self, request: Any, context: Any) -> Any:
            if not day and request.after_seq >= len(self.records):
                self._add(per_call, 1)  # new traffic since the last pass
            recs = self.records[request.after_seq:request.after_seq + request.limit]
            smps = self.samples[request.after_sample_seq:
                                request.after_sample_seq + request.sample_limit]
            return pb.GetTelemetryResponse(
                records=recs, next_seq=recs[-1].seq if recs else request.after_seq,
                sample=pb.DeviceSample(timestamp=time.time(), energy_meter="pi5-pmic",
                                       energy_measured=True, power_w=6.1,
                                       requests_total=len(self.records)),
                first_seq=1 if self.records else 0, epoch=f"e{self.index}",
                last_seq=len(self.records), samples=smps,
                next_sample_seq=smps[-1].seq if smps else request.after_sample_seq,
                first_sample_seq=1 if self.samples else 0, sample_epoch=f"s{self.index}",
                last_sample_seq=len(self.samples), sample_every_s=10.0)

    async def main() -> None:
        servers = []
        bound = []
        for i in range(first, first + count):
            server = grpc.aio.server()
            pb_grpc.add_AgentServiceServicer_to_server(Device(i), server)
            bound.append((i, server.add_insecure_port("127.0.0.1:0")))
            await server.start()
            servers.append(server)
        ports.put(bound)
        # the stop flag is another process's: poll it (bounded by the parent's join)
        await asyncio.to_thread(stop.wait)
        for server in servers:
            await server.stop(0)

    asyncio.run(main())


def _fleet(home: Path, ports: dict[int, int]) -> Any:
    os.environ["FLEET_HOME"] = str(home)
    from controller.adapters.tables import Device
    from controller.services.context import Fleet

    fleet = Fleet.open()
    fleet.inventory.add_devices([
        (Device(name=f"dev-{i:04d}", host="127.0.0.1", agent_port=port, profile="rpi5-8gb",
                model="phi3-mini", variant="q4_k_m", sha256=SHA), [f"site-{i % 20}"])
        for i, port in sorted(ports.items())])
    return fleet


def _start(devices: int, procs: int, per_call: int, day: bool
           ) -> tuple[list[Any], Any, dict[int, int]]:
    ctx = mp.get_context("spawn")
    ports_q, stop = ctx.Queue(), ctx.Event()
    share = -(-devices // procs)
    workers = []
    for p in range(procs):
        first = p * share
        count = min(share, devices - first)
        if count <= 0:
            break
        w = ctx.Process(target=_serve, args=(first, count, per_call, day, ports_q, stop),
                        daemon=True)
        w.start()
        workers.append(w)
    ports: dict[int, int] = {}
    for _ in workers:
        ports.update(dict(ports_q.get(timeout=120)))
    return workers, stop, ports


def _stop(workers: list[Any], stop: Any) -> None:
    stop.set()
    for w in workers:
        w.join(timeout=20)
        if w.is_alive():
            w.kill()


def collector_and_dashboard(devices: int, procs: int, passes: int) -> None:
    from controller.services.collecting import Collector

    workers, stop, ports = _start(devices, procs, per_call=5, day=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fleet = _fleet(Path(tmp), ports)
            names = fleet.inventory.list_devices()
            collector = Collector(fleet, concurrency=64, timeout_s=10.0)
            first = collector.run_pass(names)  # first contact: cursors made
            print(f"first pass: {len(first.reached)}/{devices} devices, {first.requests} "
                  f"records, {first.samples} samples in {first.seconds:.2f} s")
            times = []
            for _ in range(passes):
                r = collector.run_pass(names)
                assert len(r.reached) == devices, r.unreachable
                times.append(r.seconds)
                print(f"steady pass: {r.requests} records, {r.samples} samples, "
                      f"{r.seconds:.2f} s")
            best = min(times)
            print(f"collector pass over {devices} devices: {best:.2f} s (best of {passes}); "
                  f"interval 5 s; ratio pass/interval {best / 5.0:.2f}")
            dashboard(fleet)
    finally:
        _stop(workers, stop)


def dashboard(fleet: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from controller.dashboard.app import FleetRefreshed, make_dashboard
    from controller.dashboard.data import read_fleet
    from controller.services import observing

    def rich_baseline() -> float:
        started = time.perf_counter()
        rows = observing.read(fleet, fleet.inventory.list_devices())
        table = Table("device", "state", "variant", "TTFT ms", "tok/s", "W", "°C", "J/tok",
                      "group", "model", "req")
        for r in rows:
            table.add_row(r.device.name, r.state, r.active_variant, f"{r.last_ttft_ms or 0:.0f}",
                          f"{r.last_tokens_per_s or 0:.1f}", f"{r.power_w or 0:.1f}",
                          f"{r.max_temp_c or 0:.0f}", f"{r.joules_per_token or 0:.3f}",
                          ", ".join(r.device.group_names), r.active_model, str(r.requests))
        Console(file=io.StringIO(), width=120).print(table)
        return time.perf_counter() - started

    full_started = time.perf_counter()
    summary = read_fleet(fleet).summary  # the app reads this part every 10 s
    full = time.perf_counter() - full_started
    timings: dict[str, float] = {}

    async def drive() -> None:
        app = make_dashboard(fleet, refresh_s=0, collect=False)
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(400):
                if app.refreshes:
                    break
                await pilot.pause(0.05)
            best = best_read = best_fill = float("inf")
            for _ in range(5):
                started = time.perf_counter()
                snap = read_fleet(fleet, summary)  # what the read worker does
                read = time.perf_counter()
                app.on_fleet_refreshed(FleetRefreshed(snap))  # what the UI thread does
                done = time.perf_counter()
                best = min(best, done - started)
                best_read, best_fill = min(best_read, read - started), min(best_fill, done - read)
                await pilot.pause(0.05)
            timings.update(dashboard=best, read=best_read, fill=best_fill)

    asyncio.run(drive())
    rich = min(rich_baseline() for _ in range(5))
    dash = timings["dashboard"]
    print(f"fleet view refresh from the database ({len(fleet.inventory.list_devices())} "
          f"devices: rows read and the table filled; summary strip and alerts as cached): "
          f"{dash * 1000:.1f} ms; plain Rich table of the same rows: {rich * 1000:.1f} ms; "
          f"ratio {dash / rich:.2f} (target < 100 ms); of which database read "
          f"{timings['read'] * 1000:.1f} ms (worker thread), table fill "
          f"{timings['fill'] * 1000:.1f} ms (UI thread)")
    print(f"summary strip and alerts evaluated (every 10 s in the app, in a worker): "
          f"{full * 1000:.1f} ms")


def storage(devices: int, procs: int) -> None:
    workers, stop, ports = _start(devices, min(procs, devices), per_call=0, day=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fleet = _fleet(Path(tmp), ports)
            from controller.services.collecting import Collector

            collector = Collector(fleet, concurrency=16, timeout_s=60.0)
            names = fleet.inventory.list_devices()
            for _ in range(10):  # a day is several contacts' worth (MAX_PAGES per contact)
                r = collector.run_pass(names)
                if not r.incomplete:
                    break
            db = Path(tmp) / "fleet.db"
            fleet.inventory.engine.dispose()
            with sqlite3.connect(db) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.execute("VACUUM")
                tables = {}
                try:
                    for name, size in conn.execute(
                            "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
                        tables[name] = size
                except sqlite3.OperationalError:
                    pass
                counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in
                          ("telemetry_request", "telemetry_sample",
                           "telemetry_request_rollup", "telemetry_sample_rollup")}
            total = db.stat().st_size
            telemetry = sum(v for k, v in tables.items() if "telemetry" in k) or total
            print(f"storage: {devices} devices x 1 day (1 request/min, a sample every 10 s): "
                  f"rows {counts}")
            print("  bytes per device-day by table/index: " + ", ".join(
                f"{k} {v / devices / 1e3:.0f} kB" for k, v in sorted(
                    tables.items(), key=lambda kv: -kv[1]) if v / devices > 5e3))
            raw = sum(v for k, v in tables.items() if "telemetry_" in k and "rollup" not in k
                      and "telemetry_model" not in k)
            rolled = sum(v for k, v in tables.items() if "rollup" in k)
            print(f"storage per device-day (SQLite, vacuumed, tables with their indexes): "
                  f"{telemetry / devices / 1e6:.2f} MB: raw requests and samples "
                  f"{raw / devices / 1e6:.2f} MB, minute+hour rollups "
                  f"{rolled / devices / 1e6:.2f} MB")
            keep_raw, keep_min = 7, 90
            steady = (raw * keep_raw + rolled * keep_min) / devices
            print(f"at the default retention (raw 7 d, rollups 90 d; the hour rollups, a "
                  f"small part of these, 730 d) one device holds ~{steady / 1e6:.0f} MB; "
                  f"1,000 devices ~{steady * 1000 / 1e9:.1f} GB")
    finally:
        _stop(workers, stop)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--day-devices", type=int, default=10)
    args = parser.parse_args()
    collector_and_dashboard(args.devices, args.procs, args.passes)
    storage(args.day_devices, args.procs)


if __name__ == "__main__":
    main()
