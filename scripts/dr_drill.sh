#!/bin/sh
# The guide's dr_drill.sh: runs `chatbot-backup dr-drill` with the same arguments and exits
# with its status. Run from the application root, as the guide does:
#   ./scripts/dr_drill.sh [--scenario complete-failure|database-corruption] [--from-offsite]
set -eu
. "$(dirname -- "$0")/_chatbot_backup.sh"
run_chatbot_backup dr-drill "$@"
