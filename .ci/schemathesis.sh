#!/usr/bin/env bash
# schemathesis (PyPI) against /openapi.json of the built binary: every documented
# REST and Event History route gets generated requests, with a real user's token and
# a real Event History key and tenant; any 5xx fails the run. Kept to ~3 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --bin intake
bin="${CARGO_TARGET_DIR:-target}/debug/intake"
venv="${SCHEMATHESIS_VENV:-${TMPDIR:-/tmp}/intake-schemathesis}"
# Every package pinned (schemathesis-requirements.txt is `pip freeze` of a working venv):
# a new hypothesis release must not change what CI runs.
[ -x "$venv/bin/st" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q -r .ci/schemathesis-requirements.txt; }

dir="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
s3port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export INTAKE_DATA_DIR="$dir" INTAKE_HTTP_ADDR="127.0.0.1:$port" INTAKE_S3_EMBEDDED_ADDR="127.0.0.1:$s3port"
export INTAKE_LOG=warn
unset INTAKE_DATABASE_URL INTAKE_CONFIG INTAKE_CLAMD_ADDR
base="http://127.0.0.1:$port"

"$bin" admin create-user --email st@example.com --password 'schemathesis-pw' --account-type super_admin >/dev/null
key="$("$bin" admin create-api-key --label schemathesis | python3 -c 'import json, sys; print(json.load(sys.stdin)["api_key"])')"
"$bin" serve >"$dir/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do curl -fsS "$base/readyz" >/dev/null 2>&1 && break; sleep 0.2; done

token="$(curl -fsS -H 'content-type: application/json' \
  -d '{"email": "st@example.com", "password": "schemathesis-pw"}' "$base/api/auth/token/" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["access"])')"
client="$(curl -fsS -H "x-api-key: $key" -H 'content-type: application/json' \
  -d '{"database_name": "schemathesis", "client_label": "schemathesis"}' "$base/api/initialize-tenant" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["client_id"])')"

# Deleting the tenant would turn the rest of the history routes into 4xx only:
# it runs last, in a second pass.
# schemathesis keeps a cache in the working directory: keep it out of the tree.
# One worker: hypothesis parses strategies' lambdas with `ast`, and CPython 3.11's ast
# recursion counter is shared between threads, so two workers can fail the run with
# "AST constructor recursion depth mismatch" (it did in CI) without any server error.
cd "$dir"
status=0
timeout 240 "$venv/bin/st" run "$base/openapi.json" \
  --checks not_a_server_error \
  --exclude-path /api/delete-tenant \
  --max-examples 25 --phases examples,coverage,fuzzing --generation-deterministic \
  --request-timeout 10 --workers 1 \
  -H "Authorization: JWT $token" -H "X-API-Key: $key" -H "X-Client-Id: $client" || status=$?
if [ "$status" -eq 0 ]; then
  timeout 60 "$venv/bin/st" run "$base/openapi.json" \
    --checks not_a_server_error --include-path /api/delete-tenant --max-examples 10 \
    -H "Authorization: JWT $token" -H "X-API-Key: $key" -H "X-Client-Id: $client" || status=$?
fi
if [ "$status" -ne 0 ]; then
  echo "schemathesis failed ($status); server log:" >&2
  tail -n 100 "$dir/server.log" >&2
fi
exit "$status"
