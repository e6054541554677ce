#!/usr/bin/env bash
# Install everything edgefleet needs on a fresh Debian/Ubuntu machine, idempotently:
# system packages (as root), a virtual environment in .venv, llama-cpp-python built from
# source with portable CPU flags, and edgefleet itself with its dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

need_apt=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need_apt+=(openssh-client)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v tc >/dev/null 2>&1 || need_apt+=(iproute2)
# packet loss in the fault tests and bench/faults.py (iptables `statistic` in a namespace)
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || need_apt+=(iptables)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
# the OpenAI endpoint's tests talk to it with curl too
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# the test suite runs the controller against a throwaway PostgreSQL server too
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
  || need_apt+=(postgresql)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
# tests scrape `fleet monitor --metrics` with a real Prometheus server
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
"$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: missing system packages: ${need_apt[*]}" >&2
    echo "hint: sudo apt-get install -y ${need_apt[*]}" >&2
    exit 1
  fi
  echo "==> apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

if ! "$VENV/bin/python" -c 'import llama_cpp' >/dev/null 2>&1; then
  # The default native build picks up AMX kernels that crash on quantized weights on some
  # x86 hosts (SIGSEGV in ggml_backend_amx_mul_mat): build portable kernels instead.
  case "$(uname -m)" in
    x86_64) export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" ;;
    *) export CMAKE_ARGS="-DGGML_NATIVE=OFF" ;;
  esac
  echo "==> building llama-cpp-python from source (several minutes; CMAKE_ARGS=$CMAKE_ARGS)"
  "${PIP[@]}" install "llama-cpp-python>=0.3.0"
fi

stamp="$VENV/.edgefleet-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> installing edgefleet[dev] into $VENV"
  "${PIP[@]}" install -e ".[dev]"
  touch "$stamp"
fi
