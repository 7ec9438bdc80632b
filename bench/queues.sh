#!/usr/bin/env bash
# Intake throughput over each queue store, side by side in one run: the fs
# queue plain, compressed and encrypted, queue-sqlite and queue-postgres
# (proc-exec backends, against a throwaway PostgreSQL 15 started here with
# its default durability, fsync on). The same daemon and configuration for
# every mode (bench/queue-layers.conf), the modes interleaved in every
# repetition; smtp-source with SESSIONS concurrent sessions, a new
# connection per message, every 250 durable. Local deliveries are paused
# (`smtpctl pause mda`), so only intake is timed. Prints msg/s per mode
# (median of the repetitions) and the ratio to fs plain.
#
#   bench/queues.sh
#   REPS=5 CONFIGS="20:4096:2000 20:102400:300" bench/queues.sh
#   MODES="fs-plain sqlite" bench/queues.sh
#
# CONFIGS: sessions:message-size:messages, one measurement each.
# Runs as root (the daemon then drops to _smtpd; PostgreSQL runs as
# postgres) or as any user with PostgreSQL's binaries usable by it.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIGS=${CONFIGS:-"20:4096:1000 20:102400:200"}
REPS=${REPS:-3}
BASE=${BASE:-/tmp/queues-bench}
MODES=${MODES:-"fs-plain fs-compressed fs-encrypted sqlite postgres"}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
KEY=5f1c0a2e9b7d4e6f8a3b2c1d0e9f8a7b
command -v smtp-source >/dev/null || { echo "smtp-source is missing (Debian package postfix)" >&2; exit 1; }

cargo build --release -p smtpd --bin smtpd --bin smtpctl >&2
cargo build --release -p queue-sqlite -p queue-postgres >&2
SMTPD=$PWD/target/release/smtpd
SMTPCTL=$PWD/target/release/smtpctl
QSQLITE=$PWD/target/release/queue-sqlite
QPG=$PWD/target/release/queue-postgres
rm -rf "$BASE"
mkdir -p "$BASE"
chmod 755 "$BASE"
. bench/lib.sh
bench_account

# PostgreSQL for the postgres mode: initdb in BASE/pg, as postgres when
# root; stopped at exit.
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PGPORT=""
start_postgres() {
  local dir=$BASE/pg
  mkdir -p "$dir/sock"
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$dir"
  as_postgres "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
  PGPORT=$(free_port)
  as_postgres "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $dir/sock -c max_connections=100" start >/dev/null
}
stop_postgres() {
  [ -n "$PGPORT" ] && as_postgres "$PGBIN/pg_ctl" -D "$BASE/pg/data" -m fast -w stop >/dev/null || true
}
trap stop_postgres EXIT
case " $MODES " in *" postgres "*) start_postgres ;; esac

# run MODE SESSIONS SIZE MSGS N: prints the intake rate in msg/s.
run() {
  local mode=$1 sessions=$2 size=$3 msgs=$4 n=$5
  local dir=$BASE/$mode lines=""
  rm -rf "$dir"; mkdir -p "$dir/maildir" "$dir/queue"; chmod 777 "$dir" "$dir/maildir" "$dir/queue"
  case $mode in
    fs-plain) ;;
    fs-compressed) lines="queue compression" ;;
    fs-encrypted) lines="queue encryption $KEY" ;;
    sqlite)
      printf 'dbpath %s/queue/queue.sqlite\n' "$dir" > "$dir/queue-sqlite.conf"
      lines="queue proc-exec \"$QSQLITE $dir/queue-sqlite.conf\"" ;;
    postgres)
      printf 'conninfo host=127.0.0.1 port=%s user=postgres dbname=postgres\nschema bench_%s\n' \
        "$PGPORT" "$n" > "$dir/queue-postgres.conf"
      lines="queue proc-exec \"$QPG $dir/queue-postgres.conf\"" ;;
    *) echo "unknown mode $mode" >&2; exit 1 ;;
  esac
  chmod 644 "$dir"/*.conf 2>/dev/null || true
  printf '%s\n' "$lines" > "$dir/smtpd.conf"
  cat bench/queue-layers.conf >> "$dir/smtpd.conf"
  measure_intake "$mode" "$dir" "$sessions" "$size" "$msgs" | cut -d" " -f1
}

echo "# intake over each queue store: $(nproc) CPUs, $REPS repetitions, modes interleaved"
n=0
for config in $CONFIGS; do
  IFS=: read -r sessions size msgs <<< "$config"
  declare -A rates=()
  for rep in $(seq "$REPS"); do
    for mode in $MODES; do
      n=$((n + 1))
      r=$(run "$mode" "$sessions" "$size" "$msgs" "$n")
      rates[$mode]="${rates[$mode]:-} $r"
      echo "  rep $rep $mode: $r msg/s" >&2
    done
  done
  echo "sessions=$sessions size=$size msgs=$msgs"
  first=${MODES%% *}
  base=$(tr ' ' '\n' <<< "${rates[$first]}" | grep . | median)
  for mode in $MODES; do
    m=$(tr ' ' '\n' <<< "${rates[$mode]}" | grep . | median)
    python3 -c "print(f'  {\"$mode\":<14} {$m:>9.1f} msg/s  ratio to $first {$m / $base:.3f}  (runs:${rates[$mode]})')"
  done
  unset rates
done
