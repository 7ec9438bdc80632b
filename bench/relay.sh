#!/usr/bin/env bash
# Relay throughput end to end: this daemon next to Postfix and OpenSMTPD,
# measured in one run by ../shared/bench/peers.sh. smtp-source sends to each
# (20 sessions, 4 KiB messages, a new connection per message); each relays
# everything to the same smtp-sink; the e2e figure is messages per second
# from smtp-source's first connection until the sink has counted them all.
# The peers run alternately (A B C A B C ...), so the ratios printed at the
# end compare figures of the same run on the same machine state.
#
#   sudo bench/relay.sh                               # 3 repetitions, all peers
#   sudo REPS=1 PEERS="postfix ours" bench/relay.sh   # quick, without OpenSMTPD
#   sudo CONFIGS="20:4096:2000 1:4096:1000" bench/relay.sh
#   sudo KEEPALIVE=1 OS_EXTRA_CONF="smtp limit max-mails 100000" bench/relay.sh
#
# Our daemon runs from a copy of the release build as an unprivileged user
# that owns its data directory, relaying by bench/relay.conf to
# smtp://127.0.0.1:SINK_PORT, with a nameserver address nobody answers on
# inside the harness's network namespace (the relay host is an address, so
# nothing needs DNS). Results: $BASE/results/$STAMP/{runs.tsv,summary.txt}
# and the ratio lines, also written to $BASE/results/$STAMP/ratios.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
HARNESS=${HARNESS:-../shared/bench/peers.sh}
BASE=${BASE:-/tmp/peerbench-relay}
USER_NAME=${BENCH_USER:-_smtpd}
[ "$(id -u)" = 0 ] || { echo "run as root (peers.sh needs namespaces)" >&2; exit 1; }
[ -r "$HARNESS" ] || { echo "no harness at $HARNESS (set HARNESS=.../peers.sh)" >&2; exit 1; }
id "$USER_NAME" >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$USER_NAME"

cargo build --release --bin smtpd
OURS=$BASE/ours-relay
rm -rf "$OURS"
mkdir -p "$OURS/data"
cp target/release/smtpd "$OURS/smtpd"
chown -R "$USER_NAME": "$OURS/data"
chmod 700 "$OURS/data"

export OURS_CMD="cd $OURS && exec runuser -u $USER_NAME -- ./smtpd -d -f $PWD/bench/relay.conf \
  -D port=\$OURS_PORT -D sink=smtp://127.0.0.1:\$SINK_PORT \
  --data-dir $OURS/data --nameserver 127.0.0.1:5353"
export OURS_QUEUE_DIRS="$OURS/data/spool/incoming $OURS/data/spool/queue"
export PEERS=${PEERS:-"postfix opensmtpd ours"}
export CONFIGS=${CONFIGS:-20:4096:2000}
export REPS=${REPS:-3}
export RUN_TIMEOUT=${RUN_TIMEOUT:-300}
export STAMP=${STAMP:-relay-$(date +%Y%m%d-%H%M%S)}
export BASE
bash "$HARNESS" bench

# The ratios of the medians, per configuration: ours / each other peer.
python3 - "$BASE/results/$STAMP/runs.tsv" <<'PYEOF' | tee "$BASE/results/$STAMP/ratios.txt"
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])
        if l.strip() and not l.startswith("peer\t")]
med = {}
for r in rows:
    key = (r[0], r[1], r[2], r[3])
    try:
        med.setdefault(key, {"intake": [], "e2e": []})
        med[key]["intake"].append(float(r[8]))
        med[key]["e2e"].append(float(r[9]))
    except ValueError:
        pass
def m(values):
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")
configs = sorted({k[1:] for k in med}, key=lambda c: [int(x) for x in c])
for sessions, size, msgs in configs:
    ours = med.get(("ours", sessions, size, msgs))
    if not ours:
        continue
    for other in ("postfix", "opensmtpd"):
        theirs = med.get((other, sessions, size, msgs))
        if not theirs:
            continue
        o, t = m(ours["e2e"]), m(theirs["e2e"])
        ratio = o / t if t == t and t > 0 else float("nan")
        print(f"sessions={sessions} size={size} msgs={msgs}: e2e ours {o:.0f} msg/s, "
              f"{other} {t:.0f} msg/s, ratio ours/{other} = {ratio:.2f}")
PYEOF
