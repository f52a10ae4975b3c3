#!/usr/bin/env bash
# Installs everything seamcheck needs on a fresh Debian 12 machine (idempotent; run as root or with sudo):
# Debian's prometheus and haproxy, network tools for the chaos scenarios, chromium and its
# chromedriver (the report's browser test), and the harness's virtualenv in .venv. The stack's own role environments are built by the first run (uv, cached).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
need_apt=0
for bin in prometheus haproxy ip iptables socat chromium chromedriver; do
  command -v "$bin" >/dev/null 2>&1 || need_apt=1
done
if [ "$need_apt" = 1 ]; then
  echo "[setup] installing Debian packages: prometheus haproxy iproute2 iptables socat chromium chromium-driver"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    prometheus haproxy iproute2 iptables socat ca-certificates chromium chromium-driver >/dev/null
fi
# Debian's postinst may start the packaged services on a machine with systemd; the harness runs
# its own instances on free ports, so the packaged ones are not needed.
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import harness, pytest, moto, kubernetes" >/dev/null 2>&1 || [ pyproject.toml -nt .venv/.seamcheck-installed ]; then
  echo "[setup] installing seamcheck and its Python dependencies into .venv"
  # uv (a dependency of the harness: it builds the role environments) installs the rest from its cache in
  # seconds where pip, which keeps no cache here, downloads everything again (about a minute).
  .venv/bin/python -m pip install -q "uv>=0.4"
  .venv/bin/uv pip install -q --python .venv/bin/python -e ".[dev]"
  touch .venv/.seamcheck-installed
fi
echo "[setup] ready: $(.venv/bin/python -c 'import sys; print(sys.version.split()[0])'), $(prometheus --version 2>&1 | head -1), $(haproxy -v | head -1)"
