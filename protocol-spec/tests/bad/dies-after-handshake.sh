#!/bin/sh
# A broken table backend: it registers, then exits with status 3 at the first
# request (or at the end of its input). The conformance runner must report the
# exit status and this script's stderr.
while IFS= read -r line; do
    [ "$line" = "config|ready" ] && break
done
printf 'register|alias\nregister|ready\n'
IFS= read -r line
printf '%s\n' "dies-after-handshake: giving up on purpose" >&2
exit 3
