#!/bin/sh
# The guide's db_restore.sh: runs `chatbot-backup db-restore` with the same arguments and exits
# with its status. Run from the application root, as the guide does:
#   ./scripts/db_restore.sh /data/backups/admin_sqlite_YYYYMMDD_HHMMSS.db.gz   (asks for "yes"; --yes skips)
set -eu
. "$(dirname -- "$0")/_chatbot_backup.sh"
run_chatbot_backup db-restore "$@"
