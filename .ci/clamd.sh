#!/usr/bin/env bash
# Installs (if needed) and starts a ClamAV clamd for intake's tests and local runs.
#
# - Installs Debian's clamav-daemon when clamd is missing (no freshclam, no systemd:
#   the network reaches only Debian's mirror, so the official signature databases
#   are never downloaded).
# - Uses its own tiny database: one .ndb signature matching the 68-byte EICAR test
#   string anywhere in a file, inside archives too (ScanArchive).
# - Writes its own clamd.conf and starts clamd listening on 127.0.0.1:3310 and a
#   local socket, then waits (bounded) for PING -> PONG.
# - Idempotent: if something already answers PONG on the TCP port, it does nothing.
#
# On success the last line printed is INTAKE_CLAMD_ADDR=tcp://127.0.0.1:3310.
# Must run as root.
set -euo pipefail

HOST=127.0.0.1
PORT="${INTAKE_CLAMD_PORT:-3310}"
WAIT_SECS="${INTAKE_CLAMD_WAIT_SECS:-60}"
CONF_DIR=/etc/intake-clamav
CONF="$CONF_DIR/clamd.conf"
DB_DIR=/var/lib/intake-clamav
LOG_DIR=/var/log/intake-clamav
RUN_DIR=/run/intake-clamav
SOCKET="$RUN_DIR/clamd.sock"
PIDFILE="$RUN_DIR/clamd.pid"
ADDR="tcp://$HOST:$PORT"

log() { echo "clamd.sh: $*" >&2; }
die() { echo "clamd.sh: ERROR: $*" >&2; exit 1; }

# Sends zPING and succeeds only on an exact PONG reply. Bounded by `timeout`.
clamd_pongs() {
    local reply
    reply="$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "zPING\0" >&3
        IFS= read -r -d "" -u 3 r || true
        printf "%s" "$r"
    ' "$HOST" "$PORT" 2>/dev/null)" || return 1
    [[ "$reply" == "PONG" ]]
}

print_addr() { echo "INTAKE_CLAMD_ADDR=$ADDR"; }

if clamd_pongs; then
    log "clamd already answers PONG on $HOST:$PORT; nothing to do"
    print_addr
    exit 0
fi

[[ "$(id -u)" == 0 ]] || die "must run as root (installs packages, writes $CONF_DIR)"

export PATH="$PATH:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive

CLAMD_BIN="$(command -v clamd || true)"
if [[ -z "$CLAMD_BIN" ]]; then
    log "clamd not found; installing Debian's clamav-daemon"
    # Keep package scripts from starting clamd/freshclam daemons: there is no
    # systemd here, and freshclam has no network to reach. Only add a policy if
    # the image does not already have one, and only remove what we added.
    added_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        added_policy=1
    fi
    cleanup_policy() { [[ -n "$added_policy" ]] && rm -f /usr/sbin/policy-rc.d; return 0; }
    trap cleanup_policy EXIT
    apt-get update -q >&2 || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends clamav-daemon >&2 \
        || die "apt-get install clamav-daemon failed"
    cleanup_policy
    trap - EXIT
    CLAMD_BIN="$(command -v clamd || true)"
    [[ -n "$CLAMD_BIN" ]] || die "clamav-daemon installed but no clamd binary found"
fi

# freshclam would only fail (no network) and keep rewriting databases we do not use.
if pgrep -x freshclam >/dev/null 2>&1; then
    log "stopping freshclam"
    if [[ -x /etc/init.d/clamav-freshclam ]]; then
        /etc/init.d/clamav-freshclam stop >&2 || true
    fi
fi

# clamd drops privileges to this user; fall back to root if the package did not create it.
RUN_USER=clamav
id -u "$RUN_USER" >/dev/null 2>&1 || RUN_USER=root

# clamd spools every INSTREAM (and every file it takes out of an archive) to its
# temporary directory before scanning it: on a disk that is a file created and
# removed per scan, which capped clamd at about 2,000 small scans/s here, against
# 5,000-5,600/s on tmpfs (docs/OPERATIONS.md, "clamd"). RAM-backed, so it can hold
# up to MaxThreads x StreamMaxLength at once.
TMP_DIR=/var/tmp/intake-clamav
if [[ -d /dev/shm && -w /dev/shm ]]; then
    TMP_DIR=/dev/shm/intake-clamav
fi

mkdir -p "$CONF_DIR" "$DB_DIR" "$LOG_DIR" "$RUN_DIR" "$TMP_DIR"

# The standard 68-byte EICAR test string, hex-encoded for an .ndb body signature.
EICAR='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
EICAR_HEX="$(printf '%s' "$EICAR" | od -An -v -tx1 | tr -d ' \n')"
[[ ${#EICAR_HEX} == 136 ]] || die "EICAR hex has unexpected length ${#EICAR_HEX}"
# Name:TargetType(0 = any file):Offset(* = anywhere):HexSignature
printf 'Eicar-Test-Signature-intake:0:*:%s\n' "$EICAR_HEX" > "$DB_DIR/intake-test.ndb.tmp"
mv "$DB_DIR/intake-test.ndb.tmp" "$DB_DIR/intake-test.ndb"

cat > "$CONF.tmp" <<CONF
# Written by intake's .ci/clamd.sh; rewritten on every run that starts clamd.
Foreground no
User $RUN_USER
PidFile $PIDFILE
LogFile $LOG_DIR/clamd.log
LogTime yes
LogFileMaxSize 20M
DatabaseDirectory $DB_DIR
TemporaryDirectory $TMP_DIR
TCPSocket $PORT
TCPAddr $HOST
LocalSocket $SOCKET
LocalSocketMode 660
FixStaleSocket yes
MaxConnectionQueueLength 30
MaxThreads 4
ReadTimeout 120
CommandReadTimeout 30
SendBufTimeout 500
IdleTimeout 60
StreamMaxLength 512M
ScanArchive yes
MaxScanSize 1024M
MaxFileSize 512M
MaxRecursion 16
MaxFiles 10000
# Content over a limit is reported (Heuristics.Limits.Exceeded.*) instead of
# passing as clean without having been scanned.
AlertExceedsMax yes
Bytecode no
SelfCheck 0
CONF
mv "$CONF.tmp" "$CONF"

chown -R "$RUN_USER" "$DB_DIR" "$LOG_DIR" "$RUN_DIR" "$TMP_DIR"

start_ns=$(date +%s%N)
running_pid=""
if [[ -s "$PIDFILE" ]]; then
    pid="$(cat "$PIDFILE")"
    if [[ "$(ps -o comm= -p "$pid" 2>/dev/null || true)" == clamd ]]; then
        running_pid="$pid"
    fi
fi

if [[ -n "$running_pid" ]]; then
    log "clamd (pid $running_pid) is running but not answering yet; waiting for it"
else
    log "starting $CLAMD_BIN --config-file=$CONF"
    "$CLAMD_BIN" --config-file="$CONF" >&2 \
        || die "clamd failed to start; see $LOG_DIR/clamd.log: $(grep -iE 'error|warn' "$LOG_DIR/clamd.log" 2>/dev/null | tail -n 5 | tr '\n' ' ')"
fi

# Stops the clamd named in our pid file (ours: started with our config), so that
# a half-started daemon (e.g. TCP bind failed but the local socket is up) does
# not make the next run wait on it again.
stop_our_clamd() {
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    if [[ -n "$pid" && "$(ps -o comm= -p "$pid" 2>/dev/null || true)" == clamd ]]; then
        log "stopping the clamd that did not come up (pid $pid)"
        kill "$pid" 2>/dev/null || true
    fi
}

deadline=$(( $(date +%s) + WAIT_SECS ))
until clamd_pongs; do
    if (( $(date +%s) >= deadline )); then
        stop_our_clamd
        die "clamd did not answer PONG on $HOST:$PORT within ${WAIT_SECS}s; last log lines: $(tail -n 60 "$LOG_DIR/clamd.log" 2>/dev/null | grep -iE 'error|warn' | tail -n 5 | tr '\n' ' ')"
    fi
    sleep 0.2
done
elapsed_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
log "clamd answers PONG on $HOST:$PORT (ready after ${elapsed_ms} ms)"
print_addr
