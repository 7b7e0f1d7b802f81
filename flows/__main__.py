"""`python -m flows` is the `chatbot-backup` command."""

from flows.cli import main

raise SystemExit(main())
