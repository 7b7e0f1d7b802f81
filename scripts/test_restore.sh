#!/bin/sh
# The guide's test_restore.sh: runs `chatbot-backup test-restore` with the same arguments and exits
# with its status. Run from the application root, as the guide does:
#   ./scripts/test_restore.sh [--backup-file F] [--staging-server user@host]
set -eu
. "$(dirname -- "$0")/_chatbot_backup.sh"
run_chatbot_backup test-restore "$@"
