#!/usr/bin/env bash
# Builds every fuzz target with coverage instrumentation on the stable
# toolchain (no sanitizer) and runs each for a short while. With nightly and
# cargo-fuzz, `cargo fuzz run TARGET` gives the full address-sanitized runs.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-10}
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares"
# An explicit --target keeps the instrumentation out of build scripts.
triple=$(rustc -vV | sed -n "s/^host: //p")
cargo build --release --bins --target-dir target --target "$triple"
for target in table filter queue handshake smtpd_conf smtp_command; do
  mkdir -p "corpus/$target"
  # Seed the corpus: sample configurations, or the protocol vectors' lines.
  if [ "$target" = smtpd_conf ]; then
    cp ../examples/*.conf "corpus/$target/"
  elif [ "$target" = smtp_command ]; then
    n=0
    for line in "EHLO mx.example.org" "MAIL FROM:<alice@example.org> SIZE=4096 BODY=8BITMIME" \
      "RCPT TO:<bob@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.net" \
      "MAIL FROM:<>" "AUTH PLAIN AGFsaWNlAHNlY3JldA==" "RCPT TO:<@a.example,@b.example:c@d.example>" \
      "DATA" "RSET" "QUIT" "STARTTLS" "HELP" "NOOP"; do
      n=$((n + 1)); printf "%s" "$line" > "corpus/$target/seed-$n"
    done
  else
    family=$target; [ "$target" = handshake ] && family="*"
    grep -hE '^[!~]?[<>] ' ../protocol-spec/vectors/$family/*.txt | sed -E 's/^[!~]?[<>] //' | awk 'NR <= 500' |
      { n=0; while IFS= read -r line; do n=$((n + 1)); printf "%s" "$line" > "corpus/$target/vector-$n"; done; }
  fi
  echo "fuzz $target for ${seconds}s"
  log="target/$target.log"
  if ! "target/$triple/release/$target" -max_total_time="$seconds" -max_len=70000 "corpus/$target" >"$log" 2>&1; then
    cat "$log"
    exit 1
  fi
  tail -n 1 "$log"
done
