#!/usr/bin/env bash
# A local Ray head for `ray job submit`: 127.0.0.1 only, dashboard on http://127.0.0.1:8265, token
# authentication on, started from the project's .venv (a job's `python` is the head's), stopped by
# its own pid — never `ray stop`, which stops every Ray of this user on the machine.
#
#   ./scripts/ray_local.sh up [--num-cpus N] [--port 6390] [--dashboard-port 8265]
#   RAY_AUTH_MODE=token .venv/bin/ray job submit --address http://127.0.0.1:8265 --working-dir . \
#       -- python experiments/coherency.py --scale ci --out "$PWD/test-reports/integration/coherency"
#   ./scripts/ray_local.sh status
#   ./scripts/ray_local.sh down
#
# A shell script and not a `tmws` subcommand: `tmws` is the service's CLI and the service does not
# depend on Ray; this needs the virtualenv before any Python runs (it creates it on a fresh clone).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/python ]] || ./scripts/bootstrap_venv.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
exec .venv/bin/python -m cluster.local_head "$@"
