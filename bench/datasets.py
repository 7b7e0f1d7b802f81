"""Fast generators of realistic chatbot databases of a given size, for the benchmarks.

Both generators build the same shape: `agents` (a few dozen, long system prompts, jsonb
config), `conversations` (title, jsonb metadata, message count) and `messages` (short
user turns, long-tailed assistant replies with some code blocks, jsonb metadata on most
assistant turns and some user turns). Message text is drawn from a pool of pseudo-English
fragments built once in Python from a Zipf-weighted vocabulary, so it compresses roughly
like prose does (gzip -6 about 2.7x, as English text), not like repeated or random bytes.

The rows are produced by the database itself (`generate_series` in PostgreSQL, a
recursive CTE in SQLite) in chunks; after each chunk the real size is read back
(`pg_database_size`, `page_count × page_size`) and the next chunk is sized from the
measured bytes per conversation, so the result lands within a few per cent of the target.

    python bench/datasets.py postgres chatbot_bench_100mb 100
    python bench/datasets.py sqlite /tmp/bench.db 600
    python bench/datasets.py --kind chatlog postgres chatbot_bench_chatlog_300mb 300

`kind="chatlog"` (bench/datasets_chatlog.py) is the second set of issue 18: repeated
prompts, Markdown replies, JSON tool calls; gzip -6 packs its dump about 7x.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

MB = 1024 * 1024
GENERATOR_VERSION = 1
MARKER = "chatbot-bench"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

SHORT_FRAGMENTS = 12_000  # user turns
LONG_FRAGMENTS = 12_000  # assistant replies
MAX_MESSAGES_PER_CONVERSATION = 31

_SYLLABLES = (
    "ba be bi bo bu ca ce ci co cu da de di do du fa fe fi fo ga ge gi go ha he hi ho "
    "ja jo ka ke ki ko la le li lo lu ma me mi mo mu na ne ni no nu pa pe pi po pu ra re "
    "ri ro ru sa se si so su ta te ti to tu va ve vi vo wa we wi yo za zo ar er in on an "
    "en st tr pl gr th sh ch qu"
).split()
_COMMON = (
    "the of and to a in is you that it for on with as this be are can your or not have "
    "from by at we an if will do my what how please thanks use data file user api error "
    "function value time model code question answer example help need want should would "
    "could also more about which when there their one all but so just like into then"
).split()
_MODELS = ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3-mini", "gpt-3.5-turbo"]


@dataclass(frozen=True)
class Generated:
    target_mb: int
    size_bytes: int
    seconds: float
    agents: int
    conversations: int
    messages: int

    def describe(self) -> str:
        return (
            f"{self.size_bytes / MB:.0f} MB (target {self.target_mb} MB): {self.agents} agents, "
            f"{self.conversations} conversations, {self.messages} messages in {self.seconds:.1f} s"
        )


# -- text ---------------------------------------------------------------------------------


def _vocabulary(rng: random.Random, size: int = 6000) -> tuple[list[str], list[float]]:
    words = list(_COMMON)
    seen = set(words)
    while len(words) < size:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((1, 2, 2, 3, 3, 4))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    # Zipf-like; the exponent puts gzip -6 at about 2.7x, as for English prose (enwik8).
    weights = [1.0 / (rank + 1) ** 1.2 for rank in range(len(words))]
    return words, list(itertools.accumulate(weights))


def _sentence(rng: random.Random, words: list[str], weights: list[float]) -> str:
    chosen = rng.choices(words, cum_weights=weights, k=rng.randint(4, 22))
    text = " ".join(chosen)
    return text[0].upper() + text[1:] + rng.choice(".....?!:")


def _text(rng: random.Random, words: list[str], weights: list[float], length: int) -> str:
    parts: list[str] = []
    size = 0
    while size < length:
        if length > 600 and rng.random() < 0.06:  # a code block in a long reply
            name = rng.choice(words)
            block = (
                f"\n```python\ndef {name}_{rng.randint(1, 99)}(x):\n"
                f"    return [{name}(v) for v in x if v > {rng.randint(0, 1000)}]\n```\n"
            )
            parts.append(block)
            size += len(block)
            continue
        if length > 300 and rng.random() < 0.08:
            parts.append("\n\n")
        sentence = _sentence(rng, words, weights)
        parts.append(sentence + " ")
        size += len(sentence) + 1
    return "".join(parts)[:length].rstrip()


def fragments(seed: int = 20261126) -> tuple[list[str], list[str]]:
    """(user-like short texts, assistant-like long-tailed texts), deterministic."""
    rng = random.Random(seed)
    words, weights = _vocabulary(rng)
    short = [
        _text(rng, words, weights, int(min(1200, rng.lognormvariate(math.log(140), 0.8))) + 8)
        for _ in range(SHORT_FRAGMENTS)
    ]
    long = [
        _text(rng, words, weights, int(min(12000, rng.lognormvariate(math.log(900), 0.75))) + 40)
        for _ in range(LONG_FRAGMENTS)
    ]
    return short, long


def _agents(rng: random.Random, n: int = 40) -> list[tuple[int, str, str, str, str, float, str]]:
    words, weights = _vocabulary(random.Random(7))
    rows = []
    for i in range(1, n + 1):
        name = f"{rng.choice(words).title()} {rng.choice(words).title()} Assistant"
        prompt = _text(rng, words, weights, rng.randint(400, 4000))
        config = json.dumps(
            {
                "max_tokens": rng.choice((512, 1024, 2048, 4096)),
                "tools": ["search", "calculator"],
                "rag": {"enabled": rng.random() < 0.5, "top_k": rng.randint(3, 12)},
                "moderation": True,
            }
        )
        rows.append(
            (
                i,
                name,
                f"agent-{i}",
                rng.choice(_MODELS),
                prompt,
                round(rng.uniform(0, 1.2), 2),
                config,
            )
        )
    return rows


def _conversations_per_chunk(remaining: float, bytes_per_conversation: float, cap: int) -> int:
    return max(50, min(cap, int(remaining / bytes_per_conversation)))


# -- PostgreSQL -----------------------------------------------------------------------------

_PG_SCHEMA = """
CREATE TABLE agents (
    id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    slug text NOT NULL UNIQUE,
    model text NOT NULL,
    system_prompt text NOT NULL,
    temperature real NOT NULL DEFAULT 0.7,
    config jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE conversations (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    agent_id integer NOT NULL,
    user_ref text NOT NULL,
    title text,
    message_count integer NOT NULL DEFAULT 0,
    metadata jsonb,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE messages (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    conversation_id bigint NOT NULL,
    role text NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content text NOT NULL,
    tokens integer,
    metadata jsonb,
    created_at timestamptz NOT NULL
);
CREATE INDEX messages_conversation_idx ON messages (conversation_id, id);
CREATE UNLOGGED TABLE bench_fragments (id integer PRIMARY KEY, body text NOT NULL);
"""

_PG_CONVERSATIONS = """
INSERT INTO conversations (id, agent_id, user_ref, title, message_count, metadata, created_at, updated_at)
SELECT g,
       1 + (g * 7919) %% %(agents)s,
       'user-' || (g * 104729) %% 50000,
       left((SELECT body FROM bench_fragments WHERE id = 1 + (g * 31337) %% %(short)s), 60),
       2 + (g * 2654435761) %% %(span)s,
       CASE WHEN g %% 3 = 0 THEN NULL ELSE jsonb_build_object(
           'channel', (ARRAY['web', 'widget', 'api', 'slack'])[1 + g %% 4],
           'locale', (ARRAY['en', 'de', 'fr', 'es', 'pt'])[1 + g %% 5],
           'ip_hash', md5(g::text)) END,
       ts, ts + interval '1 second' * (g %% 7200)
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
     LATERAL (SELECT timestamptz '2025-01-01' + interval '1 second' * (g * 97)) AS t(ts)
"""

_PG_MESSAGES = """
INSERT INTO messages (conversation_id, role, content, tokens, metadata, created_at)
SELECT c.id,
       CASE WHEN k %% 2 = 1 THEN 'user' ELSE 'assistant' END,
       f.body,
       length(f.body) / 4,
       CASE
         WHEN k %% 2 = 0 THEN jsonb_build_object(
             'model', (ARRAY['gpt-4o', 'gpt-4o-mini', 'gpt-4.1', 'o3-mini'])[1 + (c.id + k) %% 4],
             'prompt_tokens', 200 + (c.id * k) %% 6000,
             'completion_tokens', length(f.body) / 4,
             'latency_ms', 300 + (c.id * 31 + k * 17) %% 9000,
             'finish_reason', 'stop')
         WHEN random() < 0.08 THEN jsonb_build_object(
             'attachments', jsonb_build_array(jsonb_build_object(
                 'file', 'upload-' || c.id || '-' || k || '.pdf',
                 'bytes', (c.id * 7 + k) %% 900000)))
       END,
       c.created_at + interval '23 seconds' * k
FROM conversations c
CROSS JOIN LATERAL generate_series(1, c.message_count) AS k
-- The random pick is made in its own subquery: a join clause with a volatile function in
-- it can be neither hashed nor used on an index, and becomes a filter over every fragment.
CROSS JOIN LATERAL (
    SELECT CASE WHEN k %% 2 = 1 THEN 1 + floor(random() * %(short)s)::int
                ELSE %(short)s + 1 + floor(random() * %(long)s)::int END AS fragment_id
    OFFSET 0) AS pick
JOIN bench_fragments f ON f.id = pick.fragment_id
WHERE c.id BETWEEN %(first)s AND %(last)s
"""


def admin_connection(url: str = ADMIN_URL) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


def database_url(dbname: str, base: str = ADMIN_URL) -> str:
    return base.rsplit("/", 1)[0] + "/" + dbname


def pg_marker(dbname: str, admin_url: str = ADMIN_URL) -> str | None:
    """The bench comment of `dbname` (None when missing or not built to the end)."""
    with admin_connection(admin_url) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (dbname,),
        ).fetchone()
    return None if row is None else row[0]


def pg_size(dbname: str, admin_url: str = ADMIN_URL) -> int | None:
    with admin_connection(admin_url) as conn:
        row = conn.execute(
            "SELECT pg_database_size(datname) FROM pg_database WHERE datname = %s", (dbname,)
        ).fetchone()
    return None if row is None else int(row[0])


def drop_postgres(dbname: str, admin_url: str = ADMIN_URL) -> None:
    with admin_connection(admin_url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


def _copy_fragments(conn: psycopg.Connection, short: list[str], long: list[str]) -> None:
    with conn.cursor() as cur, cur.copy("COPY bench_fragments (id, body) FROM STDIN") as copy:
        for i, body in enumerate(short + long, start=1):
            copy.write_row((i, body))


KINDS = ("prose", "chatlog")
# Which set the bench scripts build and measure: BENCH_DATASET=chatlog bench/run measures
# every row on the chat-log set (issue 18); its databases and files carry the kind in
# their names, so both sets can be kept side by side.
DEFAULT_KIND = os.environ.get("BENCH_DATASET", "prose")
if DEFAULT_KIND not in KINDS:
    raise SystemExit(f"BENCH_DATASET={DEFAULT_KIND!r}: one of {', '.join(KINDS)}")


def pg_name(size_mb: int, kind: str | None = None) -> str:
    kind = kind or DEFAULT_KIND
    return f"chatbot_bench_{size_mb}mb" if kind == "prose" else f"chatbot_bench_{kind}_{size_mb}mb"


def kind_fragments(kind: str) -> tuple[list[str], list[str]]:
    """The text pools of a data set: 'prose' (gzip -6 ~2.9x) or 'chatlog' (~7x, issue 18)."""
    if kind == "chatlog":
        import datasets_chatlog  # bench/ is on sys.path when a bench script runs

        return datasets_chatlog.fragments()
    if kind != "prose":
        raise ValueError(f"unknown data set kind {kind!r} (one of {', '.join(KINDS)})")
    return fragments()


def _marker(size_mb: int, kind: str) -> str:
    tail = "" if kind == "prose" else f" kind={kind}"  # prose databases built before stay valid
    return f"{MARKER} v{GENERATOR_VERSION} size_mb={size_mb}{tail}"


def _sqlite_version(size_mb: int, kind: str) -> int:
    return size_mb * 100 + GENERATOR_VERSION + (50 if kind == "chatlog" else 0)


def make_postgres(
    dbname: str, size_mb: int, admin_url: str = ADMIN_URL, log: bool = True, kind: str | None = None
) -> Generated:
    """(Re)create `dbname` holding a chatbot database of about `size_mb` MB."""
    kind = kind or DEFAULT_KIND
    started = time.monotonic()
    drop_postgres(dbname, admin_url)
    with admin_connection(admin_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    target = size_mb * MB
    rng = random.Random(size_mb)
    short, long = kind_fragments(kind)
    agents = _agents(rng)
    with psycopg.connect(database_url(dbname, admin_url), autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET jit = off")
        conn.execute(_PG_SCHEMA)
        _copy_fragments(conn, short, long)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO agents (id, name, slug, model, system_prompt, temperature, config)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)",
                agents,
            )
        conn.execute("ANALYZE bench_fragments")
        base = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
        # Fragments are scratch: their size is not part of the target.
        frag = int(conn.execute("SELECT pg_total_relation_size('bench_fragments')").fetchone()[0])
        first = 1
        per_conversation = 17_000.0  # a first guess; measured after every chunk
        cap = max(300, int(target / per_conversation / 6))  # about six chunks or more
        while True:
            size = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
            have = size - frag
            if have >= target * 0.985:
                break
            n = _conversations_per_chunk(target - have, per_conversation, cap)
            params = {
                "first": first,
                "last": first + n - 1,
                "agents": len(agents),
                "short": len(short),
                "long": len(long),
                "span": MAX_MESSAGES_PER_CONVERSATION - 1,
            }
            conn.execute(_PG_CONVERSATIONS, params)
            conn.execute(_PG_MESSAGES, params)
            grown = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
            per_conversation = max(1000.0, (grown - base - frag) / (first + n - 1))
            first += n
            if log:
                print(
                    f"  generated {first - 1} conversations, {(grown - frag) / MB:.0f} MB "
                    f"({time.monotonic() - started:.0f} s)",
                    file=sys.stderr,
                )
        conn.execute("DROP TABLE bench_fragments")
        conn.execute("SELECT setval(pg_get_serial_sequence('conversations', 'id'), %s)", (first,))
        conn.execute("ALTER TABLE conversations ADD FOREIGN KEY (agent_id) REFERENCES agents (id)")
        conn.execute(
            "ALTER TABLE messages ADD FOREIGN KEY (conversation_id) REFERENCES conversations (id)"
        )
        conn.execute("CREATE INDEX conversations_agent_idx ON conversations (agent_id, updated_at)")
        conn.execute("VACUUM ANALYZE")
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM agents), (SELECT count(*) FROM conversations),"
            " (SELECT count(*) FROM messages)"
        ).fetchone()
        conn.execute("CHECKPOINT")
    with admin_connection(admin_url) as conn:
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(dbname),
                sql.Literal(_marker(size_mb, kind)),
            )
        )
    size = pg_size(dbname, admin_url) or 0
    return Generated(size_mb, size, time.monotonic() - started, *map(int, counts))


def postgres_is_built(
    dbname: str, size_mb: int, admin_url: str = ADMIN_URL, kind: str | None = None
) -> bool:
    return pg_marker(dbname, admin_url) == _marker(size_mb, kind or DEFAULT_KIND)


# -- SQLite ---------------------------------------------------------------------------------

_SQLITE_SCHEMA = """
CREATE TABLE agents (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    system_prompt TEXT NOT NULL,
    temperature REAL NOT NULL DEFAULT 0.7,
    config TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY,
    agent_id INTEGER NOT NULL REFERENCES agents (id),
    user_ref TEXT NOT NULL,
    title TEXT,
    message_count INTEGER NOT NULL DEFAULT 0,
    metadata TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id),
    role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content TEXT NOT NULL,
    tokens INTEGER,
    metadata TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX messages_conversation_idx ON messages (conversation_id, id);
CREATE INDEX conversations_agent_idx ON conversations (agent_id, updated_at);
CREATE TEMP TABLE bench_fragments (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TEMP TABLE bench_k (k INTEGER PRIMARY KEY);
"""

_SQLITE_CONVERSATIONS = """
WITH RECURSIVE g(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM g WHERE i < :last)
INSERT INTO conversations (id, agent_id, user_ref, title, message_count, metadata, created_at, updated_at)
SELECT i,
       1 + (i * 7919) % :agents,
       'user-' || ((i * 104729) % 50000),
       substr((SELECT body FROM bench_fragments WHERE id = 1 + (i * 31337) % :short), 1, 60),
       2 + (i * 2654435761) % :span,
       CASE WHEN i % 3 = 0 THEN NULL ELSE json_object(
           'channel', json_extract('["web","widget","api","slack"]', '$[' || (i % 4) || ']'),
           'locale', json_extract('["en","de","fr","es","pt"]', '$[' || (i % 5) || ']'),
           'ip_hash', hex(randomblob(16))) END,
       datetime(1735689600 + i * 97, 'unixepoch'),
       datetime(1735689600 + i * 97 + i % 7200, 'unixepoch')
FROM g
"""

_SQLITE_MESSAGES = """
INSERT INTO messages (conversation_id, role, content, tokens, metadata, created_at)
SELECT c.id,
       CASE WHEN k.k % 2 = 1 THEN 'user' ELSE 'assistant' END,
       f.body,
       length(f.body) / 4,
       CASE
         WHEN k.k % 2 = 0 THEN json_object(
             'model', json_extract('["gpt-4o","gpt-4o-mini","gpt-4.1","o3-mini"]', '$[' || ((c.id + k.k) % 4) || ']'),
             'prompt_tokens', 200 + (c.id * k.k) % 6000,
             'completion_tokens', length(f.body) / 4,
             'latency_ms', 300 + (c.id * 31 + k.k * 17) % 9000,
             'finish_reason', 'stop')
         WHEN (random() & 9223372036854775807) % 100 < 8 THEN json_object(
             'attachments', json_array(json_object(
                 'file', 'upload-' || c.id || '-' || k.k || '.pdf',
                 'bytes', (c.id * 7 + k.k) % 900000)))
       END,
       datetime(c.created_at, '+' || (23 * k.k) || ' seconds')
FROM conversations c
JOIN bench_k k ON k.k <= c.message_count
JOIN bench_fragments f
  ON f.id = CASE WHEN k.k % 2 = 1 THEN 1 + (random() & 9223372036854775807) % :short
                 ELSE :short + 1 + (random() & 9223372036854775807) % :long END
WHERE c.id BETWEEN :first AND :last
ORDER BY c.id, k.k
"""


def make_sqlite(
    path: Path | str, size_mb: int, log: bool = True, kind: str | None = None
) -> Generated:
    """(Re)create a SQLite database file of about `size_mb` MB at `path` (WAL mode)."""
    started = time.monotonic()
    path = Path(path)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    target = size_mb * MB
    rng = random.Random(size_mb)
    kind = kind or DEFAULT_KIND  # BENCH_DATASET, as make_postgres
    short, long = kind_fragments(kind)
    agents = _agents(rng)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -262144")  # 256 MB
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.executescript(_SQLITE_SCHEMA)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO temp.bench_fragments (id, body) VALUES (?, ?)",
            enumerate(short + long, start=1),
        )
        conn.executemany(
            "INSERT INTO temp.bench_k (k) VALUES (?)",
            [(k,) for k in range(1, MAX_MESSAGES_PER_CONVERSATION + 1)],
        )
        conn.executemany(
            "INSERT INTO agents (id, name, slug, model, system_prompt, temperature, config)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            agents,
        )
        conn.execute("COMMIT")
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])

        def size() -> int:
            return int(conn.execute("PRAGMA main.page_count").fetchone()[0]) * page_size

        base = size()
        first = 1
        per_conversation = 17_000.0
        cap = max(300, int(target / per_conversation / 6))
        while (have := size()) < target * 0.985:
            n = _conversations_per_chunk(target - have, per_conversation, cap)
            params = {
                "first": first,
                "last": first + n - 1,
                "agents": len(agents),
                "short": len(short),
                "long": len(long),
                "span": MAX_MESSAGES_PER_CONVERSATION - 1,
            }
            conn.execute("BEGIN")
            conn.execute(_SQLITE_CONVERSATIONS, params)
            conn.execute(_SQLITE_MESSAGES, params)
            conn.execute("COMMIT")
            per_conversation = max(1000.0, (size() - base) / (first + n - 1))
            first += n
            if log:
                print(
                    f"  generated {first - 1} conversations, {size() / MB:.0f} MB "
                    f"({time.monotonic() - started:.0f} s)",
                    file=sys.stderr,
                )
        conn.execute("ANALYZE")
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM agents), (SELECT count(*) FROM conversations),"
            " (SELECT count(*) FROM messages)"
        ).fetchone()
        conn.execute("PRAGMA journal_mode = WAL")  # how the platform runs it
        conn.execute(f"PRAGMA user_version = {_sqlite_version(size_mb, kind)}")
        final = size()
    finally:
        conn.close()
    return Generated(size_mb, final, time.monotonic() - started, *map(int, counts))


def sqlite_is_built(path: Path | str, size_mb: int, kind: str | None = None) -> bool:
    path = Path(path)
    if not path.is_file():
        return False
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return version == _sqlite_version(size_mb, kind or DEFAULT_KIND)


def main(argv: list[str]) -> int:
    kind = DEFAULT_KIND
    if argv[:1] == ["--kind"] and len(argv) > 1:
        kind, argv = argv[1], argv[2:]
    if len(argv) != 3 or argv[0] not in ("postgres", "sqlite") or kind not in KINDS:
        print(__doc__.strip().splitlines()[-2:], file=sys.stderr)
        print(
            "usage: datasets.py [--kind prose|chatlog] postgres DBNAME SIZE_MB | sqlite PATH SIZE_MB",
            file=sys.stderr,
        )
        return 2
    where, size_mb = argv[1], int(argv[2])
    made = (
        make_postgres(where, size_mb, kind=kind)
        if argv[0] == "postgres"
        else make_sqlite(where, size_mb, kind=kind)
    )
    print(made.describe())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
