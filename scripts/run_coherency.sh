#!/usr/bin/env bash
# The flagship experiment (plan 4.3): three TMWS instances, one Redis, hundreds of agents in team
# namespaces reading and writing concurrently; reports in test-reports/integration/coherency/.
#
#   ./scripts/run_coherency.sh                          # laptop scale, strict cache mode
#   ./scripts/run_coherency.sh --cache-mode eventual    # pub/sub-trusting L1 (propagation delay)
#   ./scripts/run_coherency.sh --broken-cache           # skip invalidation publishing: must FAIL
#   ./scripts/run_coherency.sh --scale ci --out /tmp/c  # any experiments/coherency.py option
#
# Servers: TMWS_DATABASE_URL / TMWS_REDIS_URL when set, else the embedded default (PostgreSQL 18 +
# pgvector and Redis started from the Python wheels and stopped afterwards). Later options win,
# so `--scale ci` overrides the laptop default.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap_venv.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
# Export the MiniLM encoder's ONNX graph once (~10 s, cached) so three instances do not each do it.
.venv/bin/python -c "from service.embedding import encode_sync; encode_sync(['ok'])"
exec .venv/bin/python experiments/coherency.py --scale laptop "$@"
