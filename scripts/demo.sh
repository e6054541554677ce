#!/usr/bin/env bash
# The demo: a local lab fleet of 4 emulated devices (with their certificates), the offline
# tiny-llama ladder, a deploy that picks a different variant per device and says why (devices
# of one site taking the same file read it from each other), a few tokens from each device
# through its agent, a second rollout with a speed limit the lab cannot meet (its canary is
# measured, rolled back, the rest halt), an app's OpenAI API request on a device, the
# telemetry the collector gathered (per variant, with the selector's predictions), a rollout
# whose controller is killed half-way and is resumed from the database, a LoRA adapter rolled
# out on top of the base, a second model beside the first with an alias, the rollout log, that
# model off one device again (fleet undeploy), the alerts, then the dashboard (or a summary with
# --no-dashboard / without a TTY). Each run starts from a fresh fleet in .demo-home.
#   ./dev.sh demo [--no-dashboard] [--keep-lab]
set -euo pipefail
cd "$(dirname "$0")/.."
demo_home=$PWD/.demo-home
export FLEET_HOME=${FLEET_HOME:-$demo_home}
# a killed controller's rollout reads "interrupted" after 6 missed heartbeats: 6 s here
export FLEET_ROLLOUT_HEARTBEAT_S=${FLEET_ROLLOUT_HEARTBEAT_S:-1}
FLEET=".venv/bin/fleet"
PY=".venv/bin/python"
dashboard=1; keep=0
for arg in "$@"; do
  case "$arg" in
    --no-dashboard) dashboard=0 ;;
    --keep-lab) keep=1 ;;
    *) echo "usage: ./dev.sh demo [--no-dashboard] [--keep-lab]" >&2; exit 2 ;;
  esac
done
[ -t 1 ] || dashboard=0

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
cleanup() { [ "$keep" = 1 ] || "$FLEET" lab down >/dev/null 2>&1 || true; }
trap cleanup EXIT

if [ "$FLEET_HOME" = "$demo_home" ] && [ -e "$FLEET_HOME/fleet.db" ]; then
  # the demo's own home: a fresh fleet each run (an old database would carry the last run's
  # devices and their telemetry gaps into this one); the built models are kept
  "$FLEET" lab down >/dev/null 2>&1 || true
  rm -rf "$FLEET_HOME"/fleet.db* "$FLEET_HOME"/lab "$FLEET_HOME"/pki "$FLEET_HOME"/known_hosts \
    "$FLEET_HOME"/adapters "$FLEET_HOME"/kiosk-faq.gguf
fi

step "fleet model build tiny-llama   (offline ladder: f16, q8_0, q4_k_m, q2_k)"
"$FLEET" model build tiny-llama
step "fleet lab up --devices 4       (a real sshd + fleet-agent per device on 127.0.0.x)"
"$FLEET" lab up --devices 4
step "fleet doctor   (what would stop a deploy: host keys, agents and their versions,
    certificates, clocks, disks, the database driver; each problem with its fix)"
"$FLEET" doctor
step "fleet pki status   (the fleet CA, the controller's and every device's certificate with its
    expiry, the manifest-signing key, the revocation list: docs/security.md)"
"$FLEET" pki status
step "fleet device label lab-1 ... lab-4 site=demo-store
    (one site: a file goes to it once, and its devices read it from each other)"
for d in lab-1 lab-2 lab-3 lab-4; do "$FLEET" device label "$d" site=demo-store >/dev/null; done
step "fleet plan tiny-llama --group lab"
"$FLEET" plan tiny-llama --group lab
step "fleet deploy tiny-llama --group lab --waves 1,50%,100%
    (recorded in the database as it goes; one device first, then half, then the rest; each
    load order signed for one device and rollout; every device takes a different file here,
    so each comes from the controller)"
"$FLEET" deploy tiny-llama --group lab --waves 1,50%,100%
step "fleet generate 'The edge device' --group lab --max-tokens 12"
"$FLEET" generate "The edge device" --group lab --max-tokens 12
openai=$("$FLEET" lab status --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["devices"][0]["openai"])')
step "curl $openai/chat/completions
    (an app on lab-1 talks to its model with the OpenAI API, on the device's own loopback)"
if command -v curl >/dev/null 2>&1; then
  curl -sS "$openai/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model": "tiny-llama", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 12}' \
    | "$PY" -c 'import json,sys; r=json.load(sys.stdin); print(repr(r["choices"][0]["message"]["content"]), r["usage"])'
fi
step "fleet collect; fleet telemetry --by variant
    (the collector pulls every request record by cursor into the database; each variant's
    latency, speed and energy next to what the selector predicted for it)"
"$FLEET" collect
"$FLEET" telemetry --by variant
step "fleet deploy tiny-llama --group lab --prefer speed --min-tps 1000
    (a limit this host is unlikely to meet: the canary is measured on the device and rolled
    back, the other device of that file halts, every device keeps its model; exit 1)"
rc=0
"$FLEET" deploy tiny-llama --group lab --prefer speed --min-tps 1000 || rc=$?
[ "$rc" -le 1 ] || { echo "demo: the gated deploy exited $rc" >&2; exit 1; }
step "FLEET_FAILPOINTS=after:on-trial fleet deploy tiny-llama --group lab --prefer speed
    (the controller kills itself with SIGKILL once the first device runs the new model on
    trial, as a crash or a power cut would)"
rc=0
FLEET_FAILPOINTS=after:on-trial "$FLEET" deploy tiny-llama --group lab --prefer speed \
  --concurrency 1 || rc=$?
[ "$rc" -eq 137 ] || { echo "demo: expected the controller to be killed, got exit $rc" >&2; exit 1; }
killed=$("$FLEET" rollouts --json --limit 1 | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["rollouts"][0]["rollout"])')
step "fleet rollouts   (the killed rollout reads 'interrupted': its steps are in the database;
    its controller's process is gone, so it can be taken over at once)"
"$FLEET" rollouts
step "fleet rollouts resume $killed   (each device is asked where it stands; the one on trial is
    checked and committed, nothing it holds is sent again, the others follow; lab-1 already
    holds q2_k, so the devices of its site read it from lab-1, not from the controller: the
    'peers' column)"
"$FLEET" rollouts resume "$killed"
step "fleet rollouts show $killed --events"
"$FLEET" rollouts show "$killed" --events
adapter="$FLEET_HOME/kiosk-faq.gguf"
"$PY" -c 'import sys; from pathlib import Path; from controller.testmodels import write_tiny_lora; write_tiny_lora(Path(sys.argv[1]))' "$adapter"
step "fleet adapter add kiosk-faq --base tiny-llama kiosk-faq.gguf
    (a few-MB LoRA adapter, as llama.cpp's convert_lora_to_gguf.py writes one: its
    architecture and every adapted tensor's shape checked against the base)"
"$FLEET" adapter add kiosk-faq "$adapter" --base tiny-llama
step "fleet deploy tiny-llama --adapter kiosk-faq --group lab
    (the adapter only: each device applies it on the tiny-llama variant it runs, without
    reloading it; canary, trial, health gate and rollback as for a model; one copy to the
    site, whose devices read it from each other: the 'peers' column; a device with no
    memory for it beside its base is skipped with the figures)"
rc=0
"$FLEET" deploy tiny-llama --adapter kiosk-faq --group lab || rc=$?
[ "$rc" -le 1 ] || { echo "demo: the adapter deploy exited $rc" >&2; exit 1; }
"$FLEET" model build tiny-mlp >/dev/null
step "fleet deploy tiny-mlp --group lab --alias classifier
    (a second model beside the first, not instead: each device plans it in the memory
    tiny-llama leaves; where nothing fits beside it the reason says so, with --replace as
    the way out)"
rc=0
"$FLEET" deploy tiny-mlp --group lab --alias classifier || rc=$?
[ "$rc" -le 1 ] || { echo "demo: the second model's deploy exited $rc" >&2; exit 1; }
step "fleet status   (every model on each device: MODEL +N, and one line per model with the
    adapter its requests get: kiosk-faq on tiny-llama, beside tiny-mlp)"
"$FLEET" status || true
# the OpenAI endpoint of a device that took the adapter (lab-1, a 2 GB board, may have no room)
openai=$("$FLEET" status --json --no-collect | "$PY" -c '
import json, subprocess, sys
with_adapter = [d["device"] for d in json.load(sys.stdin)["devices"]
                if any(m.get("adapter") for m in d.get("models", [])) or d.get("adapter")]
lab = json.loads(subprocess.run([sys.argv[1], "lab", "status", "--json"], check=True,
                                capture_output=True, text=True).stdout)["devices"]
print(next((d["openai"] for d in lab if d["name"] in with_adapter), lab[0]["openai"]))' "$FLEET")
if command -v curl >/dev/null 2>&1; then
  step "curl $openai/models; then tiny-llama+ (the base alone) and tiny-llama (with the
    deployed adapter) on the same prompt: the app picks a model and adapter by name"
  curl -sS "$openai/models" | "$PY" -c 'import json,sys; print([m["id"] for m in json.load(sys.stdin)["data"]])'
  for model in "tiny-llama+" "tiny-llama"; do
    curl -sS "$openai/completions" -H 'Content-Type: application/json' \
      -d "{\"model\": \"$model\", \"prompt\": \"The edge device\", \"max_tokens\": 8, \"temperature\": 0}" \
      | "$PY" -c 'import json,sys; r=json.load(sys.stdin); print(sys.argv[1].ljust(12), repr(r["choices"][0]["text"]))' "$model"
  done
fi
step "fleet undeploy tiny-mlp --device lab-4
    (one model off one device, its other model serving on; the last model of a device goes
    only with --allow-empty)"
"$FLEET" undeploy tiny-mlp --device lab-4 || true
step "fleet alerts   (unreachable devices, crash loops, throttling, drift, SLO breaches, gaps,
    predictions off by more than 30 %)"
"$FLEET" collect >/dev/null || true
"$FLEET" alerts || true
if [ "$dashboard" = 1 ]; then
  step "fleet dashboard   (q quits; Enter opens a device, 2 the rollouts, ? the keys)"
  "$FLEET" dashboard
else
  step "fleet dashboard --no-dashboard"
  "$FLEET" dashboard --no-dashboard
fi
if [ "$keep" = 1 ]; then
  echo
  echo "The lab is still running. Explore with: export FLEET_HOME=$FLEET_HOME; $FLEET status"
  echo "Stop it with: FLEET_HOME=$FLEET_HOME $FLEET lab down"
fi
