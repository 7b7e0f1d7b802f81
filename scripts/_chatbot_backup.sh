# Sourced by the guide's scripts (backup_all.sh, db_backup.sh, ...): finds the installed
# `chatbot-backup` and replaces the script with it, so arguments, the terminal (restore
# prompts) and the exit status are the job's own.
#
# Which chatbot-backup: $CHATBOT_BACKUP if set, else the application's virtualenv
# (.venv/bin/chatbot-backup beside scripts/), else the one on PATH.
run_chatbot_backup() {
    here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
    if [ -n "${CHATBOT_BACKUP:-}" ]; then
        tool=$CHATBOT_BACKUP
    elif [ -x "$here/../.venv/bin/chatbot-backup" ]; then
        tool=$here/../.venv/bin/chatbot-backup
    elif command -v chatbot-backup >/dev/null 2>&1; then
        tool=$(command -v chatbot-backup)
    else
        echo "$(basename -- "$0"): chatbot-backup is not installed (pip install . in the application root, or set CHATBOT_BACKUP)" >&2
        exit 127
    fi
    exec "$tool" "$@"
}
