#!/bin/sh
# table-shell.sh: an smtpd table backend in plain POSIX shell, without any SDK.
#
# Usage: table-shell.sh FILE
#
# Serves the table(5) file FILE over the table protocol 0.1 (SPEC.md), reading
# requests on stdin and writing answers on stdout:
#
#   check  SERVICE KEY   found, or not-found            (exact key, any service)
#   lookup SERVICE KEY   found|VALUE, or not-found
#   fetch  SERVICE       found|VALUE, cycling through the values in file order
#   update               re-reads FILE and answers ok (error, keeping the old
#                        data, when FILE cannot be read)
#
# A request for a service this backend does not know is answered error. stdout
# carries protocol lines only; diagnostics go to stderr. At the end of stdin the
# backend exits 0. It is the "any language" example of the protocol: one process,
# one request at a time, a few screens of shell.
#
# Try it with the conformance runner:
#   smtpd-conformance table --fixture standard.table -- \
#       sh examples/table-shell.sh vectors/fixtures/standard.table

set -u

PROTOCOL=0.1
SERVICES='alias domain credentials netaddr userinfo source mailaddr addrname
mailaddrmap relayhost string regex auth'
BLANKS=' 	'   # a space and a tab

log() {
    printf 'table-shell: %s\n' "$*" >&2
}

answer() {
    printf '%s\n' "$1"
}

if [ $# -ne 1 ]; then
    log "usage: table-shell.sh FILE"
    exit 2
fi
file=$1

# ---------------------------------------------------------------- the table
#
# POSIX shell has no arrays, so entry I of the table lives in the variables
# eG_kI (key) and eG_vI (value). G is the generation: load() fills the
# generation not in use and switches to it only when the whole file was read,
# so a failed update keeps serving the old data.

entries=0      # number of entries in use
gen=0          # generation in use
cursor=1       # the entry the next fetch returns

# trim TEXT: sets $trimmed to TEXT without leading and trailing blanks.
trim() {
    trimmed=${1#"${1%%[!$BLANKS]*}"}
    trimmed=${trimmed%"${trimmed##*[!$BLANKS]}"}
}

# lower TEXT: sets $lowered to TEXT in lower case (keys are stored that way).
lower() {
    case $1 in
    *[ABCDEFGHIJKLMNOPQRSTUVWXYZ]*)
        lowered=$(printf '%s' "$1" | tr 'ABCDEFGHIJKLMNOPQRSTUVWXYZ' 'abcdefghijklmnopqrstuvwxyz') ;;
    *)
        lowered=$1 ;;
    esac
}

# load: reads $file as table(5) does. A line is "KEY VALUE" (a mapping) or
# "KEY" (a list); the first data line decides which for the whole file. The
# key ends at a space, tab or ':', or at the ']' of a line starting with '['.
# Returns 1, keeping the old data, when the file cannot be read or a line is
# malformed.
load() {
    [ -r "$file" ] || { log "cannot read $file"; return 1; }
    next=$((1 - gen))
    count=0
    kind=
    lineno=0
    while IFS= read -r raw || [ -n "$raw" ]; do
        lineno=$((lineno + 1))
        trim "$raw"
        line=$trimmed
        case $line in
        '' | '#'*) continue ;;
        '['*']'*) key="${line%%]*}]" ;;
        '['*) log "$file:$lineno: a '[' without its ']'"; return 1 ;;
        *) key=${line%%[$BLANKS:]*} ;;
        esac
        rest=${line#"$key"}
        if [ -z "$kind" ]; then
            if [ -z "$rest" ]; then kind=list; else kind=mapping; fi
        fi
        if [ "$kind" = list ]; then
            key=$line
            value=$line
        else
            case $rest in
            [$BLANKS:]*) ;;
            *) log "$file:$lineno: a key without a value"; return 1 ;;
            esac
            value=${rest#?}
            value=${value#"${value%%[!$BLANKS]*}"}
            [ -n "$value" ] || { log "$file:$lineno: a key without a value"; return 1; }
        fi
        lower "$key"
        count=$((count + 1))
        eval "e${next}_k$count=\$lowered; e${next}_v$count=\$value"
    done < "$file"
    # Forget the old generation, switch to the new one.
    i=1
    while [ "$i" -le "$entries" ]; do
        unset "e${gen}_k$i" "e${gen}_v$i"
        i=$((i + 1))
    done
    gen=$next
    entries=$count
    cursor=1
    return 0
}

# find KEY: sets $value to the value of KEY and returns 0, or returns 1. The
# search runs from the end, so that a duplicate key's last value wins.
find() {
    i=$entries
    while [ "$i" -gt 0 ]; do
        eval "k=\$e${gen}_k$i"
        if [ "$k" = "$1" ]; then
            eval "value=\$e${gen}_v$i"
            return 0
        fi
        i=$((i - 1))
    done
    return 1
}

# fetch: sets $value to the next value in file order, or returns 1 when the
# table is empty.
fetch() {
    [ "$entries" -gt 0 ] || return 1
    [ "$cursor" -le "$entries" ] || cursor=1
    eval "value=\$e${gen}_v$cursor"
    cursor=$((cursor + 1))
    return 0
}

known_service() {
    for s in $SERVICES; do
        [ "$s" = "$1" ] && return 0
    done
    return 1
}

# ---------------------------------------------------------------- requests

# pop: moves the text before the first '|' of $rest into $field. Returns 1
# when $rest holds no '|' (then $field is all of it and $rest is empty).
pop() {
    case $rest in
    *'|'*) field=${rest%%|*}; rest=${rest#*|}; return 0 ;;
    *) field=$rest; rest=; return 1 ;;
    esac
}

# handle LINE: answers one request,
#   table|0.1|TIMESTAMP|TABLE|check|SERVICE|ID|KEY
#   table|0.1|TIMESTAMP|TABLE|lookup|SERVICE|ID|KEY
#   table|0.1|TIMESTAMP|TABLE|fetch|SERVICE|ID
#   table|0.1|TIMESTAMP|TABLE|update|ID
handle() {
    rest=$1
    pop && [ "$field" = table ] || { log "not a table request: $1"; return; }
    pop && [ "$field" = "$PROTOCOL" ] || { log "not a $PROTOCOL request: $1"; return; }
    pop || { log "malformed request: $1"; return; }     # the timestamp
    pop || { log "malformed request: $1"; return; }     # the table name
    pop || field=
    op=$field
    case $op in
    update)
        id=$rest
        if load; then
            answer "update-result|$id|ok"
        else
            answer "update-result|$id|error|cannot load the table file"
        fi
        return ;;
    check | lookup | fetch) ;;
    *) log "unknown operation $op: $1"; return ;;
    esac
    pop || { log "malformed request: $1"; return; }
    service=$field
    if [ "$op" = fetch ]; then
        id=$rest
    else
        pop || { log "malformed request: $1"; return; }
        id=$field
        key=$rest       # the last field: it may hold '|'
    fi
    if ! known_service "$service"; then
        answer "$op-result|$id|error|unknown service $service"
        return
    fi
    case $op in
    check)
        if find "$key"; then
            answer "check-result|$id|found"
        else
            answer "check-result|$id|not-found"
        fi ;;
    lookup)
        if find "$key"; then
            answer "lookup-result|$id|found|$value"
        else
            answer "lookup-result|$id|not-found"
        fi ;;
    fetch)
        if fetch; then
            answer "fetch-result|$id|found|$value"
        else
            answer "fetch-result|$id|not-found"
        fi ;;
    esac
}

# ---------------------------------------------------------------- main

# The handshake: config lines up to config|ready. Unknown keys are ignored; a
# protocol version other than ours ends the backend before it registers.
ready=no
while IFS= read -r line; do
    case $line in
    'config|protocol|'*)
        version=${line#config|protocol|}
        if [ "$version" != "$PROTOCOL" ]; then
            log "unsupported protocol version $version (this backend speaks $PROTOCOL)"
            exit 1
        fi ;;
    'config|ready') ready=yes; break ;;
    'config|'*) ;;
    *) log "unexpected line during the handshake: $line"; exit 1 ;;
    esac
done

[ "$ready" = yes ] || exit 0     # stdin ended during the handshake
load || exit 1
for s in $SERVICES; do
    answer "register|$s"
done
answer "register|ready"

while IFS= read -r line; do
    handle "$line"
done
exit 0
