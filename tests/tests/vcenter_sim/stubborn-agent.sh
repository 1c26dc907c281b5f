#!/bin/bash
# A stand-in for reset-agent whose `run` ignores SIGTERM, so an aborted controller must end it
# with TerminateProcessInGuest (after its stop grace); `cleanup` and `preflight` print a line.
# `run` marks its start with a file beside its run directory (readiness for tests).
set -u
here=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in
  run)
    trap '' TERM INT
    touch "$(dirname "$here")/stubborn-$(basename "$here").started"
    exec sleep 60   # same pid, TERM still ignored: TerminateProcessInGuest's SIGKILL ends it
    ;;
  cleanup) echo "cleanup: nothing to remove" ;;
  preflight) echo "check kernel: ok" ;;
  *) echo "usage: run|cleanup|preflight" >&2; exit 2 ;;
esac
