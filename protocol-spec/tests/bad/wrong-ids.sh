#!/bin/sh
# A broken table backend: it registers properly, then answers every request
# with the right result type but another request id. The conformance runner
# must flag every answer as unsolicited and every request as unanswered.
while IFS= read -r line; do
    case $line in
    'config|protocol|'*) [ "${line#config|protocol|}" = 0.1 ] || exit 1 ;;
    'config|ready') break ;;
    esac
done
printf 'register|alias\nregister|ready\n'
while IFS= read -r line; do
    # table|0.1|TS|TABLE|OP|...: answer OP-result with a fixed id.
    rest=${line#table|0.1|*|*|}
    op=${rest%%|*}
    case $op in
    update) printf '%s\n' "update-result|ffffffff|ok" ;;
    *) printf '%s\n' "$op-result|ffffffff|not-found" ;;
    esac
done
