#!/usr/bin/env bash
# Type-check Grafana dashboards offline against Grafana's own dashboard schema.
#
#   scripts/check-dashboard.sh [DASHBOARD.json ...]   (default: deploy/grafana/*.json)
#
# Installs the pinned @grafana/schema and typescript (deploy/grafana/schema-check/
# package.json and its lock; node_modules is gitignored) if they are missing, wraps each
# JSON as `export const d = <json> satisfies SheepDashboard;` (dashboard-types.ts: Grafana's
# `Dashboard` with each panel's options checked against its plugin's schema) and runs
# `tsc --noEmit --strict`. An unknown key or a wrong type fails with tsc's message.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
check="$repo/deploy/grafana/schema-check"

command -v node >/dev/null && command -v npm >/dev/null || {
  echo "check-dashboard: node and npm are needed (apt-get install nodejs npm)" >&2; exit 2; }

stamp="$check/node_modules/.sheep-installed"
if [ ! -e "$stamp" ] || [ "$check/package-lock.json" -nt "$stamp" ]; then
  echo "check-dashboard: installing @grafana/schema and typescript (pinned)" >&2
  (cd "$check" && npm ci --no-audit --no-fund --loglevel=error >&2)
  touch "$stamp"
fi

if [ "$#" -eq 0 ]; then
  set -- "$repo"/deploy/grafana/*.json
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
ln -s "$check/node_modules" "$work/node_modules"
cp "$check/dashboard-types.ts" "$check/tsconfig.json" "$work/"

status=0
for dashboard in "$@"; do
  name="$(basename "$dashboard" .json)"
  ts="$work/${name//[^A-Za-z0-9_]/_}.check.ts"
  # Line 1 of the JSON is line 2 of the .ts: tsc's line numbers are the JSON's plus one.
  {
    printf 'import type { SheepDashboard } from "./dashboard-types";\nexport const d = '
    printf '%s' "$(cat "$dashboard")"  # no newline before `satisfies` (ASI)
    printf ' satisfies SheepDashboard;\n'
  } > "$ts"
  node -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' "$dashboard" || {
    echo "FAIL $dashboard: not valid JSON" >&2; status=1; continue; }
  base="$(basename "$ts")"
  printf '{"extends": "./tsconfig.json", "files": ["%s"]}\n' "$base" > "$work/$base.json"
  if out="$(cd "$work" && node "$check/node_modules/typescript/bin/tsc" -p "$base.json" \
              --pretty false 2>&1)"; then
    echo "ok   $dashboard satisfies the Grafana dashboard schema"
  else
    # Report JSON line numbers (the wrapper adds one line on top).
    echo "$out" | awk -v f="$dashboard" -v b="$base" '
      index($0, b "(") == 1 { split(substr($0, length(b) + 2), p, /[,)]/);
                              sub(/^[^)]*\)/, ""); printf "%s:%d:%d%s\n", f, p[1] - 1, p[2], $0; next }
      { print }' >&2
    echo "FAIL $dashboard" >&2
    status=1
  fi
done
exit "$status"
