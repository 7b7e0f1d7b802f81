#!/usr/bin/env bash
# Idempotent system setup for the test suite (runs as root, non-interactive).
# Installs what the tests need and starts PostgreSQL if it is down.
# Fast when everything is already in place: no apt-get update, no npm call.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AZURITE_VERSION="3.35.0"   # 3.36+ needs Node >= 21; the machine has Node 20
NODE_PREFIX="$REPO/.cache/node"
export DEBIAN_FRONTEND=noninteractive

step() { printf '[setup] %-28s %s\n' "$1" "$2"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# --- Debian packages ---------------------------------------------------------
t0=$(now)
declare -A want=([openssh-server]=/usr/sbin/sshd [rsync]=/usr/bin/rsync
                 [prometheus]=/usr/bin/promtool [age]=/usr/bin/age)
missing=()
for pkg in openssh-server rsync prometheus age; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || [ ! -x "${want[$pkg]}" ]; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    step "apt packages" "already installed"
else
    # Keep package maintainer scripts from starting daemons (prometheus server,
    # sshd on port 22): a policy-rc.d that denies every start, removed afterwards.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
    fi
    trap '[ "$own_policy" = 1 ] && rm -f "$policy"' EXIT
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" >/dev/null
    if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
    trap - EXIT
    step "apt packages" "installed ${missing[*]} ($(elapsed "$t0"))"
fi

# We only need /usr/bin/promtool: make sure no prometheus server daemon runs.
if pids=$(pidof /usr/bin/prometheus 2>/dev/null); then
    kill $pids 2>/dev/null || true
    step "prometheus daemon" "stopped pid(s) $pids"
else
    step "prometheus daemon" "not running"
fi

# --- sshd runtime dir ----------------------------------------------------------
mkdir -p /run/sshd
chmod 755 /run/sshd
step "/run/sshd" "ok"

# --- Azurite (npm) ---------------------------------------------------------------
t0=$(now)
if [ -x "$NODE_PREFIX/node_modules/.bin/azurite-blob" ]; then
    step "azurite" "already installed"
else
    command -v npm >/dev/null || { step "azurite" "FAILED: npm not found (Node.js 20+ needed)"; exit 1; }
    mkdir -p "$NODE_PREFIX"
    npm install --prefix "$NODE_PREFIX" --no-audit --no-fund --loglevel=error \
        "azurite@$AZURITE_VERSION" >/dev/null
    step "azurite" "installed $AZURITE_VERSION ($(elapsed "$t0"))"
fi

# --- PostgreSQL ------------------------------------------------------------------
if pg_isready -q -h 127.0.0.1; then
    step "postgresql" "accepting connections"
else
    pg_ctlcluster --skip-systemctl-redirect 15 main start
    for _ in $(seq 1 30); do
        pg_isready -q -h 127.0.0.1 && break
        sleep 1
    done
    pg_isready -q -h 127.0.0.1 || { step "postgresql" "FAILED to start"; exit 1; }
    step "postgresql" "started"
fi
