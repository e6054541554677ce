#!/usr/bin/env bash
# The demo: a local lab fleet of 4 emulated devices, the offline tiny-llama ladder, a deploy
# that picks a different variant per device and says why, a few tokens from each device
# through its agent, a second rollout with a speed limit the lab cannot meet (its canary is
# measured, rolled back, the rest halt), the rollout log, then the dashboard (or a summary with
# --no-dashboard / without a TTY).
#   ./dev.sh demo [--no-dashboard] [--keep-lab]
set -euo pipefail
cd "$(dirname "$0")/.."
export FLEET_HOME=${FLEET_HOME:-$PWD/.demo-home}
FLEET=".venv/bin/fleet"
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

step "fleet model build tiny-llama   (offline ladder: f16, q8_0, q4_k_m, q2_k)"
"$FLEET" model build tiny-llama
step "fleet lab up --devices 4       (a real sshd + fleet-agent per device on 127.0.0.x)"
"$FLEET" lab up --devices 4
step "fleet plan tiny-llama --group lab"
"$FLEET" plan tiny-llama --group lab
step "fleet deploy tiny-llama --group lab"
"$FLEET" deploy tiny-llama --group lab
step "fleet generate 'The edge device' --group lab --max-tokens 12"
"$FLEET" generate "The edge device" --group lab --max-tokens 12
step "fleet deploy tiny-llama --group lab --prefer speed --min-tps 1000
    (a limit this host is unlikely to meet: the canary is measured on the device and rolled
    back, the other device of that file halts, every device keeps its model; exit 1)"
rc=0
"$FLEET" deploy tiny-llama --group lab --prefer speed --min-tps 1000 || rc=$?
[ "$rc" -le 1 ] || { echo "demo: the gated deploy exited $rc" >&2; exit 1; }
step "fleet rollouts   (the log; 'fleet rollouts ID' shows one rollout device by device)"
"$FLEET" rollouts
if [ "$dashboard" = 1 ]; then
  step "fleet dashboard   (q quits)"
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
