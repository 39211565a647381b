#!/usr/bin/env bash
# The test command: set up .venv, lint, then run the whole pytest suite on the embedded default
# (real PostgreSQL + pgvector and Redis started and stopped by the tests themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap_venv.sh
# The MCP conformance suite (npm, with Node 22) for tests/service/transport/test_conformance.py.
./scripts/mcp_conformance.sh --install-only
# Headless Chromium for the report screenshot test (tests/analysis/test_screenshot.py).
./scripts/install_chromium.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Export the MiniLM encoder's ONNX graph once (~10 s, cached) before tests start servers side by side.
.venv/bin/python -c "from service.embedding import encode_sync; encode_sync(['ok'])"
exec .venv/bin/pytest "$@"
