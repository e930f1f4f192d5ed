#!/usr/bin/env bash
# Writes to stdout an MDM export of N enrolled devices for POST /v1/devices/import:
#
#   bench/make-mdm-csv.sh N [OWNER] > devices.csv
#
# The ids are exemptd-loadgen's (LOAD-000001, LOAD-000002, …), so a load run with --devices M <= N
# checks in as imported devices; owner (default load@example.com) and source "mdm" match what
# `exemptd-loadgen seed` enrolls, so seeding after an import changes nothing.
set -euo pipefail
n="${1:?usage: make-mdm-csv.sh N [OWNER]}"
owner="${2:-load@example.com}"
[[ "$n" =~ ^[0-9]+$ ]] || { echo "make-mdm-csv.sh: N must be a number" >&2; exit 2; }
awk -v n="$n" -v owner="$owner" 'BEGIN {
    print "device_id,enrolled,owner,source"
    for (i = 1; i <= n; i++) printf "LOAD-%06d,true,%s,mdm\n", i, owner
}'
