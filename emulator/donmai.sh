#!/bin/bash
# A fake `donmai` CLI for the E2B emulator's donmai-worker template.
#   donmai agent run [args...]  prints progress lines (also to $DONMAI_LOG) until stopped
#   donmai --version            prints a version
log="${DONMAI_LOG:-$HOME/donmai.log}"
interval="${DONMAI_INTERVAL:-2}"
case "$1 $2" in
  "agent run")
    shift 2
    echo "$(date -u +%FT%TZ) donmai agent started (pid $$) args: $*" | tee -a "$log"
    trap 'echo "$(date -u +%FT%TZ) donmai agent stopping" | tee -a "$log"; exit 0' TERM INT
    step=0
    while :; do
      step=$((step + 1))
      echo "$(date -u +%FT%TZ) donmai agent progress: step $step" | tee -a "$log"
      sleep "$interval" &
      wait $!
    done
    ;;
  "--version "*|"version "*)
    echo "donmai 0.0.0-emulator"
    ;;
  *)
    echo "usage: donmai agent run [args...] | donmai --version" >&2
    exit 2
    ;;
esac
