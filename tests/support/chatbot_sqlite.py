"""The GPT Chatbot platform's SQLite admin database, with everything a migration trips on.

agents, conversations, messages: AUTOINCREMENT keys with gaps (deleted rows, and the
newest rows deleted so that sqlite_sequence is ahead of max(id)), foreign keys with ON
DELETE CASCADE, CHECK constraints, 0/1 booleans, JSON columns, BLOBs holding zero bytes,
unicode with tabs, newlines, quotes and backslashes, NULLs, reals such as -0.0 and
1e-300, CURRENT_TIMESTAMP-style times; a WITHOUT ROWID settings table, a partial index,
a view and a trigger. Deterministic for a seed. Used by tests/test_migrate*.py and
bench/migrate.py.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE agents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL DEFAULT 'gpt-4o-mini',
    system_prompt TEXT,
    temperature REAL NOT NULL DEFAULT 0.7 CHECK (temperature >= 0 AND temperature <= 2),
    is_active BOOLEAN NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    config JSON,
    avatar BLOB,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    user_ref TEXT NOT NULL,
    title TEXT,
    archived BOOLEAN DEFAULT 0,
    metadata JSON,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    updated_at DATETIME
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content TEXT NOT NULL,
    tokens INTEGER,
    score REAL,
    attachment BLOB,
    metadata JSON,
    created_at DATETIME NOT NULL DEFAULT (datetime('now')),
    FOREIGN KEY (conversation_id) REFERENCES conversations (id) ON DELETE CASCADE
);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT, updated_at INTEGER) WITHOUT ROWID;
CREATE INDEX messages_conversation ON messages (conversation_id, created_at);
CREATE INDEX conversations_live ON conversations (agent_id) WHERE archived = 0;
CREATE VIEW agent_stats AS
    SELECT a.id, a.name, count(c.id) AS conversations
    FROM agents a LEFT JOIN conversations c ON c.agent_id = a.id GROUP BY a.id, a.name;
"""
# Created once the rows are in (it would run once per generated message).
TRIGGER = """
CREATE TRIGGER messages_touch AFTER INSERT ON messages BEGIN
    UPDATE conversations SET updated_at = NEW.created_at WHERE id = NEW.conversation_id;
END;
"""

_WORDS = (
    "hello world ünïcødé naïve café Ωμέγα 日本語 テスト 🚀 ✓ emoji 'quoted' \"double\" "
    "back\\slash tab\there new\nline percent% dollar$ {json} [list] <html> &amp; null"
).split(" ")


def _text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(low, high)))


def _stamp(rng: random.Random, base: int) -> str:
    seconds = base + rng.randint(0, 86400 * 30)
    day, rest = divmod(seconds, 86400)
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    return f"2025-{1 + day // 28 % 12:02d}-{1 + day % 28:02d} {hour:02d}:{minute:02d}:{second:02d}"


def make_chatbot_db(
    path: Path, messages: int = 1000, agents: int = 20, conversations: int = 200, seed: int = 7,
    plain_defaults: bool = False,
) -> Path:
    """Create the database at `path` (which must not exist) and return it.

    `plain_defaults`: messages.created_at defaults to CURRENT_TIMESTAMP instead of
    `(datetime('now'))` (pgloader 3.6.7 cannot create a table with the latter)."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    schema = SCHEMA.replace("DEFAULT (datetime('now'))", "DEFAULT CURRENT_TIMESTAMP") if plain_defaults else SCHEMA
    db.executescript(schema)
    db.execute("PRAGMA foreign_keys = ON")
    agent_rows = []
    for i in range(1, agents + 1):
        config = None if i % 5 == 0 else json.dumps(
            {"tools": ["search", "code"][: i % 3], "max_tokens": 1000 + i, "temperature": 0.5,
             "nested": {"ünï": [1, 2.5, None, True]}, "big": 2**62 + i},
            ensure_ascii=i % 2 == 0,
        )
        avatar = None if i % 4 == 0 else bytes([0, i % 256, 0, 255]) + rng.randbytes(rng.randint(0, 64))
        agent_rows.append(
            (f"agent-{i} {_text(rng, 1, 2)}"[:60] + f" #{i}", _text(rng, 0, 30) if i % 3 else None,
             [0.0, 0.7, 1.25, 2.0][i % 4], i % 2, config, avatar, _stamp(rng, 0))
        )
    db.executemany(
        "INSERT INTO agents (name, system_prompt, temperature, is_active, config, avatar, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        agent_rows,
    )
    db.executemany(
        "INSERT INTO conversations (agent_id, user_ref, title, archived, metadata, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (1 + i % agents, f"user-{i * 7919 % 5000}", _text(rng, 0, 6) or None,
             None if i % 11 == 0 else i % 2,
             None if i % 3 == 0 else json.dumps({"channel": ["web", "api"][i % 2], "locale": "de-DE", "n": i}),
             _stamp(rng, 0), None)
            for i in range(conversations)
        ],
    )
    scores = [None, -0.0, 0.1 + 0.2, 1e-300, 3.5e15, -2.25, 7.0]
    batch = []
    for i in range(messages):
        attachment = None
        if i % 7 == 0:
            attachment = b"\x00" * (i % 5) + rng.randbytes(rng.randint(0, 40)) + b"\x00"
        metadata = None
        if i % 2 == 0:
            metadata = json.dumps({"model": "gpt-4o", "prompt_tokens": i % 600, "latency": i / 7, "ok": True})
        batch.append(
            (1 + (i * 31) % conversations, ["user", "assistant", "system", "tool"][i % 4],
             _text(rng, 1, 25), None if i % 9 == 0 else i % 800, scores[i % len(scores)],
             attachment, metadata, _stamp(rng, i))
        )
        if len(batch) >= 5000:
            _insert_messages(db, batch)
            batch = []
    _insert_messages(db, batch)
    # Gaps in the ids, and the newest rows gone: AUTOINCREMENT never hands their ids out again.
    db.execute("DELETE FROM messages WHERE id % 97 = 0")
    newest = db.execute("SELECT max(id) FROM messages").fetchone()[0] or 0
    db.execute("DELETE FROM messages WHERE id > ?", (newest - 3,))
    db.execute("DELETE FROM agents WHERE id = ?", (agents,))  # cascades to its conversations
    db.execute(
        "UPDATE conversations SET updated_at = (SELECT max(created_at) FROM messages m "
        "WHERE m.conversation_id = conversations.id)"
    )
    db.executescript(TRIGGER)
    db.executemany(
        "INSERT INTO settings VALUES (?, ?, ?)",
        [("theme", "dark", 1735689600), ("welcome", "Willkommen 👋\n", None), ("limits", '{"rpm": 60}', 2)],
    )
    db.commit()
    db.close()
    return path


def _insert_messages(db: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    db.executemany(
        "INSERT INTO messages (conversation_id, role, content, tokens, score, attachment, metadata, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
