#!/bin/sh
# A broken table backend: it reads everything and never answers, not even the
# handshake. The conformance runner must say "never registered" after its
# timeout.
printf '%s\n' "never-registers: waiting forever" >&2
while IFS= read -r line; do :; done
