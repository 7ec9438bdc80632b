#!/bin/sh
# table-quirks.sh: a table backend (protocol 0.1) that misbehaves on purpose,
# chosen by the key of each request, for the supervisor's tests.
#
#   KEY        lookup answer                       check answer
#   garbage    lookup-result|ID|ok (illegal for a lookup, names its request)
#   nonsense   a line naming no request, then found|after-nonsense
#   twice      found|first, then a duplicate found|second
#   long       a line over 1 MiB, then found|after-long
#   slow       found|late, a second later, in the background (requests sent
#              meanwhile are answered at once)
#   hold       nothing; says "holding ID" on stderr
#   uid        found|UID (the user the backend runs as)
#   anything   found|value-of-KEY                  found
#
# fetch answers found|fetched, update answers ok. It registers an unknown
# service before alias, to check that the daemon ignores it.

set -u

while IFS= read -r line; do
    case $line in
    'config|ready') break ;;
    'config|'*) ;;
    *) echo "table-quirks: unexpected handshake line: $line" >&2; exit 1 ;;
    esac
done
echo 'register|frobnicate'
echo 'register|alias'
echo 'register|ready'

while IFS= read -r line; do
    # table|0.1|TIMESTAMP|NAME|OP|...
    rest=${line#table|0.1|*|*|}
    op=${rest%%|*}
    rest=${rest#*|}
    case $op in
    update) echo "update-result|$rest|ok"; continue ;;
    fetch) echo "fetch-result|${rest#*|}|found|fetched"; continue ;;
    esac
    rest=${rest#*|}          # the service
    id=${rest%%|*}
    key=${rest#*|}
    case $key in
    garbage) echo "$op-result|$id|ok" ;;
    nonsense) echo "what is this"; echo "$op-result|$id|found|after-nonsense" ;;
    twice) echo "$op-result|$id|found|first"; echo "$op-result|$id|found|second" ;;
    long)
        head -c 1100000 /dev/zero | tr '\0' x; echo
        echo "$op-result|$id|found|after-long" ;;
    slow) (sleep 1; echo "$op-result|$id|found|late") & ;;
    hold) echo "table-quirks: holding $id" >&2 ;;
    uid) echo "$op-result|$id|found|$(id -u)" ;;
    *)
        if [ "$op" = check ]; then
            echo "check-result|$id|found"
        else
            echo "$op-result|$id|found|value-of-$key"
        fi ;;
    esac
done
exit 0
