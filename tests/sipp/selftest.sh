#!/usr/bin/env bash
# Plays the SIPp scenarios of this directory against each other on loopback,
# without trunkd, to show that each UAC/UAS pair is consistent (UDP and TCP).
#
#   tests/sipp/selftest.sh            # every pair, u1 and t1
#   TRANSPORTS=u1 tests/sipp/selftest.sh
#
# Ports: UAC 127.0.0.1:$UAC_PORT (15060), UAS 127.0.0.1:$UAS_PORT (15080).
# Prints one line per pair and exits 1 if any pair did not end as expected.
# Message traces of failing pairs are kept in the printed directory.
set -u
cd "$(dirname "$0")"
here=$(pwd)
UAC_PORT=${UAC_PORT:-15060}
UAS_PORT=${UAS_PORT:-15080}
TRANSPORTS=${TRANSPORTS:-"u1 t1"}
work=$(mktemp -d /tmp/sipp-selftest.XXXXXX)
uas_pid=
cleanup() { [ -n "$uas_pid" ] && kill "$uas_pid" 2>/dev/null; }
trap cleanup EXIT

# UAS stand-ins for the uac_expect_* files, made from uas_reject_486.xml.
mk_reject() { # code reason extra-header-line
    sed -e "s/486 Busy Here/$1 $2/g" -e "s/reject 486/reject $1/" \
        -e "s|^      Content-Length: 0\$|${3:+      $3\n}      Content-Length: 0|" \
        "$here/uas_reject_486.xml" >"$work/reject_$1.xml"
}
mk_reject 403 Forbidden
mk_reject 404 "Not Found"
mk_reject 488 "Not Acceptable Here"
mk_reject 503 "Service Unavailable" "Retry-After: 7"
mk_reject 407 "Proxy Authentication Required" 'Proxy-Authenticate: Digest realm="trunkd.local", nonce="abc", algorithm=MD5'
# A silent UAS that gives up after 2 s instead of 40.
sed 's/timeout="40000"/timeout="2000"/' "$here/uas_silent.xml" >"$work/silent_2s.xml"

failed=0
# run TRANSPORT UAS-FILE UAC-FILE EXPECT-UAC-RC EXPECT-UAS-RC [UAC OPTIONS...]
# (an expected exit code may be an alternation: "1|255")
run() {
    local t=$1 uas=$2 uac=$3 want_c=$4 want_s=$5; shift 5
    local name
    name="$(basename "$uac" .xml)~$(basename "$uas" .xml)~$t"
    sipp -sf "$uas" -t "$t" -i 127.0.0.1 -p "$UAS_PORT" -m 1 -nostdin \
         -timeout 15s -timeout_error -trace_msg -message_file "$work/$name.uas.msg" \
         >"$work/$name.uas.out" 2>&1 &
    uas_pid=$!
    sleep 0.3
    sipp -sf "$uac" -t "$t" -i 127.0.0.1 -p "$UAC_PORT" -s +12065550199 \
         -key caller +12065550100 -m 1 -nostdin -timeout 15s -timeout_error \
         -trace_msg -message_file "$work/$name.uac.msg" "$@" \
         "127.0.0.1:$UAS_PORT" >"$work/$name.uac.out" 2>&1
    local rc_c=$?
    wait "$uas_pid"; local rc_s=$?
    uas_pid=
    if [[ $rc_c =~ ^($want_c)$ ]] && [[ $rc_s =~ ^($want_s)$ ]]; then
        printf 'ok    %-48s uac %s, uas %s\n' "$name" "$rc_c" "$rc_s"
        rm -f "$work/$name".*
    else
        printf 'FAIL  %-48s uac %s (want %s), uas %s (want %s)\n' "$name" "$rc_c" "$want_c" "$rc_s" "$want_s"
        failed=1
    fi
}

for t in $TRANSPORTS; do
    run "$t" uas_answer.xml      uac_call.xml       0 0 -d 200
    run "$t" uas_answer.xml      uac_reinvite.xml   0 0 -d 100
    run "$t" uas_reinvite.xml    uac_reinvite.xml   0 0 -d 100
    run "$t" uas_ring_cancel.xml uac_cancel.xml     0 0
    run "$t" uas_bye.xml         uac_recv_bye.xml   0 0
    run "$t" uas_auth.xml        uac_auth.xml       0 0 -d 100 -au gw -ap secret
    run "$t" uas_auth.xml        uac_auth.xml       1 1 -d 100 -au gw -ap wrong
    for code in 403 404 407 488 503; do
        run "$t" "$work/reject_$code.xml" "uac_expect_$code.xml" 0 0
    done
    # Negative checks: 503 without Retry-After; a 486 where a 403 is expected.
    run "$t" uas_reject_503.xml  uac_expect_503.xml 1 0
    run "$t" uas_reject_486.xml  uac_expect_403.xml 1 0
    # The silent UAS: the caller's call fails (UDP: its -timeout expires, 255;
    # TCP: the UAS closes the connection when it exits, 1); the UAS's call
    # ends after its wait, successfully.
    run "$t" "$work/silent_2s.xml" uac_call.xml     "1|255" 0 -timeout 3s
done

if [ "$failed" = 0 ]; then
    rm -rf "$work"
    echo "selftest: all pairs ended as expected"
else
    echo "selftest: FAILED; traces in $work"
fi
exit "$failed"
