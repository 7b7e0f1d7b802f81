#!/bin/sh
# The guide's backup_all.sh: runs `chatbot-backup backup-all` with the same arguments and exits
# with its status. Run from the application root, as the guide does:
#   ./scripts/backup_all.sh [--retention-days N] [--offsite] [--tier T]
set -eu
. "$(dirname -- "$0")/_chatbot_backup.sh"
run_chatbot_backup backup-all "$@"
