# Result lines of the shell suites and their JUnit form. Source after common.sh.
#   result VERDICT NAME [MESSAGE]   print "VERDICT: NAME[: MESSAGE]" (PASS, FAIL, XFAIL, SKIP), count it
#                                   (and append it to $RESULTS_FILE when set)
#   results_summary                 "N passed, N failed, N xfailed, N skipped"
#   results_finish                  print the summary and exit: 0 when nothing failed, else 1
#   results_from PREFIX CMD...      run CMD, count its result lines here (printed again), print its
#                                   other lines after PREFIX; returns CMD's exit status
#   junit_write SUITE LINES OUT     JUnit XML from a file of result lines: one testcase per line;
#                                   FAIL -> <failure>, SKIP and XFAIL -> <skipped> with the message
#                                   (XFAIL = an expected failure of the upstream driver)
# shellcheck shell=bash

R_PASS=0 R_FAIL=0 R_XFAIL=0 R_SKIP=0
result() {
    local v=$1 name=$2 msg=${3:-}
    echo "$v: $name${msg:+: $msg}"
    [ -z "${RESULTS_FILE:-}" ] || echo "$v: $name${msg:+: $msg}" >>"$RESULTS_FILE"
    case "$v" in
        PASS) R_PASS=$((R_PASS + 1)) ;;
        FAIL) R_FAIL=$((R_FAIL + 1)) ;;
        XFAIL) R_XFAIL=$((R_XFAIL + 1)) ;;
        SKIP) R_SKIP=$((R_SKIP + 1)) ;;
        *) die "result: unknown verdict $v" ;;
    esac
}
results_from() {
    local prefix=$1 line v rest name msg rcf rc
    shift
    rcf=$(mktemp /tmp/vmc-results-rc.XXXXXX)
    while IFS= read -r line; do
        case "$line" in
            PASS:*|FAIL:*|XFAIL:*|SKIP:*)
                v=${line%%: *} rest=${line#*: } msg=""
                name=${rest%%: *}; [ "$name" = "$rest" ] || msg=${rest#*: }
                result "$v" "$name" "$msg" ;;
            *) echo "$prefix$line" ;;
        esac
    done < <("$@"; echo $? >"$rcf")
    rc=$(cat "$rcf"); rm -f "$rcf"
    return "${rc:-1}"
}
results_summary() { echo "$R_PASS passed, $R_FAIL failed, $R_XFAIL xfailed, $R_SKIP skipped"; }
results_finish() { results_summary; [ "$R_FAIL" -eq 0 ]; exit; }

xml_escape() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/"/\&quot;/g' -e "s/'/\&apos;/g" | tr -d '\000-\010\013\014\016-\037'; }

junit_write() {
    local suite=$1 lines=$2 out=$3 v name msg n f x s
    n=$(grep -cE '^(PASS|FAIL|XFAIL|SKIP): ' "$lines" || true)
    f=$(grep -c '^FAIL: ' "$lines" || true)
    x=$(grep -cE '^(XFAIL|SKIP): ' "$lines" || true)
    {
        echo '<?xml version="1.0" encoding="UTF-8"?>'
        echo "<testsuites><testsuite name=\"$(xml_escape <<<"$suite")\" tests=\"$n\" failures=\"$f\" errors=\"0\" skipped=\"$x\">"
        grep -E '^(PASS|FAIL|XFAIL|SKIP): ' "$lines" | while IFS= read -r line; do
            v=${line%%: *}; s=${line#*: }
            name=${s%%: *}; msg=""
            [ "$name" != "$s" ] && msg=${s#*: }
            printf '  <testcase classname="%s" name="%s">' "$(xml_escape <<<"$suite")" "$(xml_escape <<<"$name")"
            case "$v" in
                FAIL) printf '<failure message="%s"/>' "$(xml_escape <<<"$msg")" ;;
                XFAIL) printf '<skipped message="%s"/>' "$(xml_escape <<<"XFAIL (expected failure of the upstream driver): $msg")" ;;
                SKIP) printf '<skipped message="%s"/>' "$(xml_escape <<<"$msg")" ;;
            esac
            echo '</testcase>'
        done
        echo '</testsuite></testsuites>'
    } >"$out"
}
