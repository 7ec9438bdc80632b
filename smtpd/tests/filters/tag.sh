#!/bin/sh
# A filter in plain shell (filter protocol 0.7), for smtpd/tests/filters_proc.rs.
#
#   tag.sh NAME LOG PIDFILE
#
# Writes its pid to PIDFILE and every line it reads to LOG. Registers every
# smtp-in report event and the phases mail-from, data-line and commit:
# - mail-from: stall@... is never answered; garbage@... gets a malformed
#   answer; shellreject@... is rejected with "550 5.7.1 NAME says no";
#   everything else proceeds;
# - data-line: a "Subject: " line gets " NAME" appended; other lines pass
#   unchanged (the final "." too);
# - commit: proceeds.
name=$1
log=$2
echo $$ > "$3"
while IFS= read -r line; do
    printf '%s\n' "$line" >> "$log"
    case $line in
    "config|ready")
        printf 'register|report|smtp-in|*\n'
        printf 'register|filter|smtp-in|mail-from\n'
        printf 'register|filter|smtp-in|data-line\n'
        printf 'register|filter|smtp-in|commit\n'
        printf 'register|ready\n'
        ;;
    filter\|*)
        rest=${line#filter|*|*|*|}
        phase=${rest%%|*}
        rest=${rest#*|}
        sid=${rest%%|*}
        rest=${rest#*|}
        token=${rest%%|*}
        param=${rest#*|}
        case $phase in
        mail-from)
            case $param in
            stall@*) ;;
            garbage@*) printf 'filter-result|%s|%s|maybe\n' "$sid" "$token" ;;
            shellreject@*)
                printf 'filter-result|%s|%s|reject|550 5.7.1 %s says no\n' "$sid" "$token" "$name"
                ;;
            *) printf 'filter-result|%s|%s|proceed\n' "$sid" "$token" ;;
            esac
            ;;
        data-line)
            case $param in
            "Subject: "*) param="$param $name" ;;
            esac
            printf 'filter-dataline|%s|%s|%s\n' "$sid" "$token" "$param"
            ;;
        *) printf 'filter-result|%s|%s|proceed\n' "$sid" "$token" ;;
        esac
        ;;
    esac
done
