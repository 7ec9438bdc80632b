#!/usr/bin/env bash
# The cost of `queue compression` and `queue encryption` on intake over
# the fs queue: the same daemon in four modes (plain, compressed,
# encrypted, both) measured in one run, the modes interleaved in every
# repetition (in turn forwards and backwards, after a sync and SETTLE
# seconds of rest), with smtp-source (SESSIONS concurrent sessions, a new
# connection per message, every 250 durable). Local deliveries are paused
# during the measurement (`smtpctl pause mda`), so only intake is timed.
# Prints, per mode, the median of the repetitions of two figures and
# the median of their ratios to plain (each against the plain run of the
# same repetition): intake msg/s (wall clock, which other load on
# the machine disturbs), and the daemon's CPU time per message (user +
# system of the smtpd process over the measured run), which is what the
# layers add to and what a busy machine disturbs less.
#
#   bench/queue-layers.sh
#   REPS=5 CONFIGS="20:4096:2000 20:65536:500" bench/queue-layers.sh
#
# CONFIGS: sessions:message-size:messages, one measurement each.
# Runs as root (the daemon then drops to _smtpd) or as any user. The CPU
# cost of the layers alone, per piece and without disk or load noise:
# `cargo bench -p smtpd --bench queue_layers`.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIGS=${CONFIGS:-"20:4096:2000 20:102400:300"}
REPS=${REPS:-3}
BASE=${BASE:-/tmp/queue-layers-bench}
MODES=${MODES:-"plain compressed encrypted both"}
KEY=5f1c0a2e9b7d4e6f8a3b2c1d0e9f8a7b
command -v smtp-source >/dev/null || { echo "smtp-source is missing (Debian package postfix)" >&2; exit 1; }

# BUILD=0 measures the release binaries already built.
[ "${BUILD:-1}" = 0 ] || cargo build --release --bin smtpd --bin smtpctl >&2
SMTPD=$PWD/target/release/smtpd
SMTPCTL=$PWD/target/release/smtpctl
rm -rf "$BASE"
mkdir -p "$BASE"
. bench/lib.sh
bench_account
chmod 755 "$BASE"

# run MODE SESSIONS SIZE MSGS: prints the intake rate in msg/s and the
# daemon's CPU microseconds per message.
run() {
  local mode=$1 sessions=$2 size=$3 msgs=$4
  local dir=$BASE/$mode lines=""
  rm -rf "$dir"; mkdir -p "$dir/maildir"; chmod 777 "$dir" "$dir/maildir"
  case $mode in
    plain) ;;
    compressed) lines="queue compression" ;;
    encrypted) lines="queue encryption $KEY" ;;
    both) lines=$'queue compression\nqueue encryption '"$KEY" ;;
  esac
  printf '%s\n' "$lines" > "$dir/smtpd.conf"
  cat bench/queue-layers.conf >> "$dir/smtpd.conf"
  measure_intake "$mode" "$dir" "$sessions" "$size" "$msgs"
}

echo "# queue layers on fs intake: $(nproc) CPUs, $REPS repetitions, modes interleaved"
for config in $CONFIGS; do
  IFS=: read -r sessions size msgs <<< "$config"
  declare -A rates=() cpus=() rate_ratios=() cpu_ratios=()
  for rep in $(seq "$REPS"); do
    declare -A rep_rate=() rep_cpu=()
    # Odd repetitions in the order of MODES, even ones reversed, so that
    # no mode always runs right after the same other one.
    order=$MODES
    [ $((rep % 2)) = 1 ] || order=$(tr ' ' '\n' <<< "$MODES" | tac | tr '\n' ' ')
    for mode in $order; do
      # Let the previous run's writes and removals reach the disk.
      sync; sleep "${SETTLE:-1}"
      read -r r c <<< "$(run "$mode" "$sessions" "$size" "$msgs")"
      rep_rate[$mode]=$r; rep_cpu[$mode]=$c
      rates[$mode]="${rates[$mode]:-} $r"
      cpus[$mode]="${cpus[$mode]:-} $c"
      echo "  rep $rep $mode: $r msg/s, $c us CPU/msg" >&2
    done
    # Each mode against the plain run of the same repetition, so that
    # the load of the machine drifting between repetitions cancels out.
    for mode in $MODES; do
      rate_ratios[$mode]="${rate_ratios[$mode]:-} $(python3 -c "print(f'{${rep_rate[$mode]} / ${rep_rate[plain]}:.3f}')")"
      cpu_ratios[$mode]="${cpu_ratios[$mode]:-} $(python3 -c "print(f'{${rep_cpu[$mode]} / ${rep_cpu[plain]}:.3f}')")"
    done
    unset rep_rate rep_cpu
  done
  echo "sessions=$sessions size=$size msgs=$msgs (medians of $REPS repetitions; ratios to plain in the same repetition)"
  for mode in $MODES; do
    m=$(tr ' ' '\n' <<< "${rates[$mode]}" | grep . | median)
    c=$(tr ' ' '\n' <<< "${cpus[$mode]}" | grep . | median)
    rr=$(tr ' ' '\n' <<< "${rate_ratios[$mode]}" | grep . | median)
    cr=$(tr ' ' '\n' <<< "${cpu_ratios[$mode]}" | grep . | median)
    printf '  %-11s %8.1f msg/s (x%s)  %6.0f us CPU/msg (x%s)   ratios msg/s:%s  CPU:%s\n' \
      "$mode" "$m" "$rr" "$c" "$cr" "${rate_ratios[$mode]}" "${cpu_ratios[$mode]}"
  done
  unset rates cpus rate_ratios cpu_ratios
done
