"""fleet-agent: the device-side command.

    fleet-agent serve --listen HOST:PORT --data-dir DIR --tls-dir DIR [--emulate PROFILE]
        [--port-file F] [--inference-listen ADDR] [--openai-listen ADDR]
        [--stream-interval-ms MS] [--max-concurrent-rpcs N] [--max-message-mib M]
        [--inference-max-message-mib M] [--max-prompt-kib K] [--runtime-cpus auto|off|LIST]
        [--insecure]
    fleet-agent probe [--emulate PROFILE]

argparse, not typer: the agent installs on a device with grpcio, protobuf and a runtime only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import asdict
from pathlib import Path

from agent.cpu_sets import pin_process
from agent.emulation import emulated_view
from agent.probe import probe_host
from agent.profile_files import find_profile_file, read_toml
from agent.runtimes.base import DEFAULT_STREAM_INTERVAL_S


def _serve(args: argparse.Namespace) -> int:
    from agent.limits import MIB, AgentLimits
    from agent.server import ConfigError, create_server

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        running = create_server(
            args.listen, Path(args.data_dir), emulate=args.emulate, reserve_mib=args.reserve_mib,
            max_threads=args.threads, inference_listen=args.inference_listen,
            tls_dir=Path(args.tls_dir) if args.tls_dir else None,
            openai_listen=args.openai_listen, stream_interval_s=args.stream_interval_ms / 1000,
            insecure=args.insecure,
            limits=AgentLimits(
                max_concurrent_rpcs=args.max_concurrent_rpcs,
                max_message_bytes=int(args.max_message_mib * MIB),
                inference_max_message_bytes=int(args.inference_max_message_mib * MIB),
                max_prompt_bytes=int(args.max_prompt_kib * 1024)),
            runtime_cpus=args.runtime_cpus,
        )
    except (ConfigError, RuntimeError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        hint = getattr(exc, "hint", "") or (
            "check --listen HOST:PORT is free and --data-dir is writable")
        print(f"hint: {hint}", file=sys.stderr)
        return 2
    # the agent's own threads (gRPC, HTTP, telemetry) off the cores the runtimes decode on
    pin_process(running.cpu_plan.agent)
    if args.port_file:
        tmp = Path(args.port_file + ".tmp")
        tmp.write_text(f"{running.port}\n")
        os.replace(tmp, args.port_file)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    running.stop()
    return 0


def _probe(args: argparse.Namespace) -> int:
    host = probe_host()
    out: dict[str, object] = {"host": asdict(host)}
    if args.emulate:
        path = find_profile_file(args.emulate)
        if path is None:
            print(f"error: no profile named {args.emulate!r}", file=sys.stderr)
            print("hint: `fleet profile list` shows the names", file=sys.stderr)
            return 2
        out["emulated"] = asdict(emulated_view(host, read_toml(path)))
    print(json.dumps(out, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleet-agent", description="edgefleet device agent")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the agent API")
    serve.add_argument("--listen", default="127.0.0.1:50051", help="HOST:PORT (port 0: any)")
    serve.add_argument("--data-dir", default=str(Path.home() / ".local/share/edgefleet-agent"))
    serve.add_argument("--emulate", default="", help="lab: report and obey this profile")
    serve.add_argument("--reserve-mib", type=int, default=256, help="RAM left for the OS")
    serve.add_argument("--port-file", default="", help="write the bound port here when ready")
    serve.add_argument("--inference-listen", default="",
                       help="local inference-only listener for apps: unix:///PATH or "
                       "127.0.0.1:PORT (no model management there)")
    serve.add_argument("--openai-listen", default="",
                       help="OpenAI-compatible HTTP endpoint for apps on the device "
                       "(/v1/chat/completions...): unix:///PATH or 127.0.0.1:PORT; needs the "
                       "openai extra (docs/serving.md)")
    serve.add_argument("--stream-interval-ms", type=float,
                       default=DEFAULT_STREAM_INTERVAL_S * 1000,
                       help="while tokens come faster, streamed text goes out at most once "
                       "per this many ms (0: every token alone; default %(default)g)")
    serve.add_argument("--tls-dir", default="",
                       help="agent.crt, agent.key, ca.crt (clients must present a certificate "
                       "of that CA) and signing.pub (manifests must be signed by it)")
    serve.add_argument("--insecure", action="store_true",
                       help="allow --listen on a non-loopback address without --tls-dir "
                       "(anyone who reaches it controls the device; trusted test networks "
                       "only)")
    serve.add_argument("--threads", type=int, default=0,
                       help="cap on runtime threads (default: the device's cores)")
    serve.add_argument("--runtime-cpus", default="off",
                       help="CPUs for the model runtimes: auto (when the runtime uses fewer "
                       "threads than there are cores, the fastest cores, and the agent's own "
                       "threads on the others), a list such as 4-7, or off (default "
                       "%(default)s; docs/agent.md)")
    serve.add_argument("--max-concurrent-rpcs", type=int, default=32,
                       help="calls in progress per gRPC listener; more are refused "
                       "(RESOURCE_EXHAUSTED) (default %(default)d)")
    serve.add_argument("--max-message-mib", type=float, default=4.0,
                       help="largest request message on --listen (default %(default)g)")
    serve.add_argument("--inference-max-message-mib", type=float, default=4.0,
                       help="largest request message on --inference-listen "
                       "(default %(default)g)")
    serve.add_argument("--max-prompt-kib", type=float, default=1024.0,
                       help="longest prompt accepted, refused before tokenising "
                       "(default %(default)g)")
    serve.set_defaults(func=_serve)
    probe = sub.add_parser("probe", help="print this machine's hardware as JSON")
    probe.add_argument("--emulate", default="")
    probe.set_defaults(func=_probe)
    args = parser.parse_args(argv)
    return int(args.func(args))


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
