# Shared by the intake benchmarks (bench/filters.sh, bench/queues.sh):
# sourced, never run. Needs SMTPD and SMTPCTL (release binaries) and
# smtp-source on PATH.

# The account the daemon delivers as, in uid and gid: _smtpd (or
# BENCH_USER) as root, created when missing; the caller otherwise.
bench_account() {
  if [ "$(id -u)" = 0 ]; then
    local user=${BENCH_USER:-_smtpd}
    id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
    uid=$(id -u "$user"); gid=$(id -g "$user")
  else
    uid=$(id -u); gid=$(id -g)
  fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# cpu PID: user + system clock ticks of the process so far.
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# measure_intake MODE DIR SESSIONS SIZE MSGS: runs the daemon on
# DIR/smtpd.conf (which takes -D port, account and maildir) with local
# deliveries paused, warms it up with 50 messages, then prints the msg/s
# of MSGS messages of SIZE bytes over SESSIONS concurrent smtp-source
# sessions (a new connection per message; every 250 durable) and the
# daemon's CPU microseconds per message, checks the daemon accepted them
# all, and removes DIR.
measure_intake() {
  local mode=$1 dir=$2 sessions=$3 size=$4 msgs=$5
  local port pid start end cpu0 cpu1 accepted
  port=$(free_port)
  "$SMTPD" -d -f "$dir/smtpd.conf" -D port="$port" -D "account=\"$uid:$gid:$dir\"" \
    -D "maildir=\"$dir/maildir\"" --data-dir "$dir/data" --control-socket "$dir/smtpd.sock" \
    --nameserver 127.0.0.1:9 2> "$dir/smtpd.log" &
  pid=$!
  for _ in $(seq 100); do grep -q "listening on 127.0.0.1:$port" "$dir/smtpd.log" && break; sleep 0.1; done
  grep -q "listening on 127.0.0.1:$port" "$dir/smtpd.log" || { cat "$dir/smtpd.log" >&2; kill "$pid"; exit 1; }
  "$SMTPCTL" -s "$dir/smtpd.sock" --data-dir "$dir/data" pause mda >/dev/null
  # A short warm-up, then the measurement.
  smtp-source -s 4 -m 50 -l "$size" -f s@example.org -t rcpt@example.org "127.0.0.1:$port" >/dev/null
  cpu0=$(cpu "$pid")
  start=$(date +%s.%N)
  smtp-source -s "$sessions" -m "$msgs" -l "$size" -f s@example.org -t rcpt@example.org "127.0.0.1:$port" >/dev/null
  end=$(date +%s.%N)
  cpu1=$(cpu "$pid")
  kill -TERM "$pid"; wait "$pid" || true
  accepted=$(grep -c " smtp message msgid=" "$dir/smtpd.log" || true)
  [ "$accepted" -ge "$((msgs + 50))" ] || { echo "$mode: only $accepted accepted" >&2; tail -20 "$dir/smtpd.log" >&2; exit 1; }
  python3 -c "import os; print(f'{$msgs / ($end - $start):.1f} {($cpu1 - $cpu0) * 1e6 / os.sysconf(\"SC_CLK_TCK\") / $msgs:.0f}')"
  rm -rf "$dir"
}
