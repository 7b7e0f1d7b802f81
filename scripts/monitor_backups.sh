#!/bin/sh
# The guide's monitor_backups.sh: runs `chatbot-backup monitor` with the same arguments and exits
# with its status. Run from the application root, as the guide does:
#   ./scripts/monitor_backups.sh   (exit 0 all passed, 1 warnings, 2 critical)
set -eu
. "$(dirname -- "$0")/_chatbot_backup.sh"
run_chatbot_backup monitor "$@"
