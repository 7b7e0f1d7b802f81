#!/bin/sh
# The guide's restore_all.sh: runs `chatbot-backup restore-all` with the same arguments and exits
# with its status. Run from the application root, as the guide does:
#   ./scripts/restore_all.sh /data/backups/full_backup_YYYYMMDD_HHMMSS.tar.gz   (asks for "yes"; --yes skips)
set -eu
. "$(dirname -- "$0")/_chatbot_backup.sh"
run_chatbot_backup restore-all "$@"
