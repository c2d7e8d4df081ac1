#!/usr/bin/env bash
# Install the peer tools the overhead benchmark compares against, in their own virtualenv
# (never sagepipe dependencies).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv-peers
.venv-peers/bin/pip install -q metaflow dvc
