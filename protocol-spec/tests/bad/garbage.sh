#!/bin/sh
# A broken table backend: it answers the handshake with a line that is not a
# registration. The conformance runner must say "answered garbage".
while IFS= read -r line; do
    [ "$line" = "config|ready" ] && break
done
printf '%s\n' "hello, I am not a table"
while IFS= read -r line; do :; done
