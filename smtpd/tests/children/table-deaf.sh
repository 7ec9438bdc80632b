#!/bin/sh
# table-deaf.sh: a table backend that registers, then stops reading its
# input (and never answers).
while IFS= read -r line; do
    [ "$line" = 'config|ready' ] && break
done
echo 'register|alias'
echo 'register|ready'
exec sleep 3600
