#!/usr/bin/env bash
# Intake throughput of this daemon next to Postfix and OpenSMTPD, measured
# in one run by ../shared/bench/peers.sh (smtp-source, 20 sessions, 4 KiB
# messages, a new connection per message, every 250 durable).
#
#   sudo bench/peers-intake.sh                 # 3 repetitions, all peers
#   sudo REPS=1 PEERS="postfix ours" bench/peers-intake.sh
#
# Our daemon delivers locally into a maildir (relaying is not built yet),
# so only the intake, CPU and PSS columns compare like with like; the
# end-to-end column waits for the sink and times out for us.
set -euo pipefail
cd "$(dirname "$0")/.."
HARNESS=${HARNESS:-../shared/bench/peers.sh}
BASE=${BASE:-/tmp/peerbench}
USER_NAME=${BENCH_USER:-_smtpd}
[ "$(id -u)" = 0 ] || { echo "run as root (peers.sh needs namespaces)" >&2; exit 1; }
id "$USER_NAME" >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$USER_NAME"

cargo build --release --bin smtpd
OURS=$BASE/ours-intake
rm -rf "$OURS"
mkdir -p "$OURS/data" "$OURS/maildir"
cp target/release/smtpd "$OURS/smtpd"
chown -R "$USER_NAME": "$OURS/data" "$OURS/maildir"
chmod 700 "$OURS/data"
uid=$(id -u "$USER_NAME"); gid=$(id -g "$USER_NAME")

# The daemon asks a nameserver port nobody serves inside the namespace:
# rDNS fails at once, as it does for the peers there.
export OURS_CMD="cd $OURS && exec runuser -u $USER_NAME -- ./smtpd -d -f $PWD/bench/intake.conf \
  -D port=\$OURS_PORT -D 'account=\"$uid:$gid:$OURS\"' -D 'maildir=\"$OURS/maildir\"' \
  --data-dir $OURS/data --nameserver 127.0.0.1:5353"
export OURS_QUEUE_DIRS="$OURS/data/spool"
export CONFIGS=${CONFIGS:-20:4096:2000}
export REPS=${REPS:-3}
export RUN_TIMEOUT=${RUN_TIMEOUT:-60}
export BASE
exec bash "$HARNESS" bench
