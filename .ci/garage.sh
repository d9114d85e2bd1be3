#!/usr/bin/env bash
# A single-node Garage (a real S3 server) on loopback for the integration suite:
# config with a generated RPC secret, layout assigned and applied, an access key
# allowed to create buckets (each test creates its own), and a default bucket.
# Idempotent: a Garage already answering on the port is reused. Prints the
# INTAKE_TEST_S3_* exports to eval:  eval "$(bash .ci/garage.sh)"
set -euo pipefail

dir=${GARAGE_DIR:-/tmp/intake-garage}
s3_port=${GARAGE_S3_PORT:-3900}
rpc_port=${GARAGE_RPC_PORT:-3901}
bin=$(command -v garage || echo "$HOME/.cargo/bin/garage")
[ -x "$bin" ] || { echo "garage not installed (cargo install --locked garage)" >&2; exit 1; }
mkdir -p "$dir/meta" "$dir/data"
cfg="$dir/garage.toml"
env_file="$dir/env"

if [ ! -f "$cfg" ]; then
  cat >"$cfg" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(openssl rand -hex 32)"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"
TOML
fi
g() { "$bin" -c "$cfg" "$@"; }

if ! g status >/dev/null 2>&1; then
  nohup "$bin" -c "$cfg" server >"$dir/garage.log" 2>&1 &
  echo $! >"$dir/pid"
  for _ in $(seq 1 60); do g status >/dev/null 2>&1 && break; sleep 0.5; done
  g status >/dev/null 2>&1 || { echo "garage did not start; see $dir/garage.log" >&2; tail -20 "$dir/garage.log" >&2; exit 1; }
fi

if [ ! -f "$env_file" ]; then
  node=$(g node id -q | cut -d@ -f1)
  g layout assign -z dc1 -c 1G "$node" >&2
  g layout apply --version 1 >&2
  key_id="GK$(openssl rand -hex 12)"
  secret=$(openssl rand -hex 32)
  g key import --yes -n intake-ci "$key_id" "$secret" >&2
  g key allow --create-bucket intake-ci >&2
  g bucket create intake-ci >&2
  g bucket allow --read --write --owner intake-ci --key intake-ci >&2
  cat >"$env_file" <<ENV
export INTAKE_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port
export INTAKE_TEST_S3_REGION=garage
export INTAKE_TEST_S3_ACCESS_KEY_ID=$key_id
export INTAKE_TEST_S3_SECRET_ACCESS_KEY=$secret
ENV
fi
cat "$env_file"
