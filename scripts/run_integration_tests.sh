#!/usr/bin/env bash
# Run the integration test plan's scenarios (experiments/*.py) and write their reports.
#
#   ./scripts/run_integration_tests.sh                      # every suite, ci scale
#   ./scripts/run_integration_tests.sh --suite=concurrency  # one suite (repeat, or a,b,c)
#   ./scripts/run_integration_tests.sh --scale=laptop       # ci (default) | laptop | cloud | FILE
#   TEST_TIMEOUT=1200 ./scripts/run_integration_tests.sh    # seconds per suite (default 900)
#   ./scripts/run_integration_tests.sh --report=detailed    # print every suite's summary.md
#   ./scripts/run_integration_tests.sh --allow-skip=NAME    # accept that criterion NAME skips
#   ./scripts/run_integration_tests.sh -- --seed 3          # extra args for every experiment
#
# A suite is every experiments/<name>.py that defines `EXPERIMENT`. Reports go to
# test-reports/integration/<suite>/ (REPORT_DIR overrides the root), plus an overall
# index.html and a combined junit.xml there. Servers: TMWS_DATABASE_URL / TMWS_REDIS_URL when
# set (docker compose, CI service containers), else the embedded default. The default scale is
# `ci` so a full pass fits a small machine; use --scale=laptop for the plan's figures.
# A skipped critical criterion fails its suite unless named with --allow-skip=NAME (repeatable,
# or a,b,c; passed to every experiment).
# Exit code: 0 when every suite passed its critical criteria, 1 otherwise, 2 on bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "run_integration_tests: $1 (see --help)" >&2; exit 2; }

scale=ci
report=summary
suites=()
extra=()
allow=()
while (($#)); do
  case $1 in
    --suite=*) IFS=, read -r -a more <<<"${1#--suite=}"; suites+=("${more[@]}") ;;
    --suite) (($# > 1)) || usage "--suite needs a name"; shift
      IFS=, read -r -a more <<<"$1"; suites+=("${more[@]}") ;;
    --scale=*) scale=${1#--scale=} ;;
    --report=*) report=${1#--report=} ;;
    --allow-skip=*) IFS=, read -r -a more <<<"${1#--allow-skip=}"; allow+=("${more[@]}") ;;
    --allow-skip) (($# > 1)) || usage "--allow-skip needs a name"; shift
      IFS=, read -r -a more <<<"$1"; allow+=("${more[@]}") ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_integration_tests: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $report == summary || $report == detailed ]] \
  || { echo "run_integration_tests: --report is summary or detailed" >&2; exit 2; }

available=()
for file in experiments/*.py; do
  grep -q '^EXPERIMENT = ' "$file" && available+=("$(basename "$file" .py)")
done
if ((${#suites[@]} == 0)); then
  suites=("${available[@]}")
fi
for suite in "${suites[@]}"; do
  [[ " ${available[*]} " == *" $suite "* ]] || {
    echo "run_integration_tests: no suite '$suite' (have: ${available[*]})" >&2
    exit 2
  }
done

# Only after every usage check: bad usage must not touch (or create) the virtualenv.
./scripts/bootstrap_venv.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0

root=${REPORT_DIR:-test-reports/integration}
timeout_s=${TEST_TIMEOUT:-900}
mkdir -p "$root"
status_file="$root/.suites.tsv"
: >"$status_file"
allow_args=()
for name in "${allow[@]}"; do
  [[ -n $name ]] && allow_args+=(--allow-skip "$name")
done
failed=0
for suite in "${suites[@]}"; do
  out="$root/$suite"
  rm -rf "$out"
  mkdir -p "$out"
  echo "=== $suite (scale $scale, timeout ${timeout_s}s) ==="
  started=$(date +%s)
  set +e
  # --kill-after: a suite that ignores SIGTERM is still stopped (it cleans up on SIGTERM).
  timeout --kill-after=60 "$timeout_s" .venv/bin/python "experiments/$suite.py" \
    --scale "$scale" --out "$out" --quiet "${allow_args[@]}" "${extra[@]}" 2>&1 \
    | tee "$out/run.log"
  code=${PIPESTATUS[0]}
  set -e
  elapsed=$(($(date +%s) - started))
  case $code in
    0) verdict=passed ;;
    124|137) verdict="timed out after ${timeout_s}s" ;;
    1) verdict=failed ;;
    *) verdict="error (exit $code)" ;;
  esac
  ((code == 0)) || failed=1
  printf '%s\t%s\t%s\t%s\n' "$suite" "$code" "$verdict" "$elapsed" >>"$status_file"
  if [[ $report == detailed && -f $out/summary.md ]]; then
    cat "$out/summary.md"
  fi
done

.venv/bin/python - "$root" "$status_file" <<'PY'
"""Overall index.html and combined junit.xml over the suites of this pass."""
import html
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

root, status_file = Path(sys.argv[1]), Path(sys.argv[2])
rows = [line.split("\t") for line in status_file.read_text().splitlines() if line]
suites_xml = ET.Element("testsuites", name="tmws-integration")
table = []
for suite, code, verdict, elapsed in rows:
    folder = root / suite
    junit = folder / "junit.xml"
    if junit.is_file():
        parsed = ET.parse(junit).getroot()
        found = parsed.findall("testsuite") if parsed.tag == "testsuites" else [parsed]
        suites_xml.extend(found)
    else:
        broken = ET.SubElement(suites_xml, "testsuite", name=suite, tests="1", failures="0",
                               errors="1", time=elapsed)
        case = ET.SubElement(broken, "testcase", classname=suite, name="run", time=elapsed)
        ET.SubElement(case, "error", message=verdict).text = f"{suite}: {verdict}; see run.log"
    tally = {}
    metrics = folder / "metrics.json"
    if metrics.is_file():
        tally = json.loads(metrics.read_text()).get("tally", {})
    link = f'<a href="{html.escape(suite)}/index.html">{html.escape(suite)}</a>'
    cls = "ok" if code == "0" else "bad"
    table.append(
        f'<tr class="{cls}"><td>{link}</td><td>{html.escape(verdict)}</td>'
        f"<td>{tally.get('passed', '')}</td><td>{tally.get('failed', '')}</td>"
        f"<td>{tally.get('skipped', '')}</td><td>{elapsed}s</td>"
        f'<td><a href="{html.escape(suite)}/summary.md">summary</a> · '
        f'<a href="{html.escape(suite)}/run.log">log</a></td></tr>'
    )
ET.ElementTree(suites_xml).write(root / "junit.xml", encoding="utf-8", xml_declaration=True)
passed = sum(1 for r in rows if r[1] == "0")
(root / "index.html").write_text(
    "<!doctype html><meta charset=utf-8><title>TMWS integration tests</title>"
    "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.3em .8em;text-align:left}"
    ".ok td:nth-child(2){color:#080}.bad td:nth-child(2){color:#b00}</style>"
    f"<h1>TMWS integration tests</h1><p>{passed} of {len(rows)} suites passed.</p>"
    "<table><tr><th>suite</th><th>verdict</th><th>criteria passed</th><th>failed</th>"
    "<th>skipped</th><th>wall time</th><th></th></tr>" + "".join(table) + "</table>\n"
)
print(f"\n{passed}/{len(rows)} suites passed; overall report: {root / 'index.html'}")
for suite, code, verdict, elapsed in rows:
    print(f"  {'✓' if code == '0' else '✗'} {suite:<24} {verdict} ({elapsed}s)")
PY
rm -f "$status_file"
exit "$failed"
