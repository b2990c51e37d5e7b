#!/bin/sh
# Turns a feature flag off through the flag service's HTTP API.
# Usage: disable-flag.sh FLAG. rollguard passes ROLLGUARD_RULE, ROLLGUARD_GRADE,
# ROLLGUARD_REASON, ... in the environment; they go into the flag's audit note.
set -eu
flag=$1
note="rollguard: rule ${ROLLGUARD_RULE:-?} is ${ROLLGUARD_GRADE:-?}: ${ROLLGUARD_REASON:-}"
exec curl --fail --silent --show-error --max-time 20 \
  -X PUT "http://127.0.0.1:4242/api/flags/${flag}" \
  -H 'Content-Type: application/json' \
  --data "{\"enabled\": false, \"note\": \"$(printf '%s' "$note" | sed 's/["\\]/\\&/g')\"}"
