#!/bin/sh
# The guide's db_backup.sh: runs `chatbot-backup db-backup` with the same arguments and exits
# with its status. Run from the application root, as the guide does:
#   ./scripts/db_backup.sh [--retention-days N] [--offsite]
set -eu
. "$(dirname -- "$0")/_chatbot_backup.sh"
run_chatbot_backup db-backup "$@"
