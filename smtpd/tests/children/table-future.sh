#!/bin/sh
# table-future.sh: a table backend that speaks only a protocol version from
# the future, 0.2, and says so as SPEC.md section 1.7 asks.
while IFS= read -r line; do
    case $line in
    'config|protocol|'*)
        version=${line#config|protocol|}
        if [ "$version" != 0.2 ]; then
            echo "table-future: unsupported protocol version $version (this backend speaks 0.2)" >&2
            exit 1
        fi ;;
    'config|ready') break ;;
    esac
done
echo 'register|alias'
echo 'register|ready'
while IFS= read -r line; do :; done
