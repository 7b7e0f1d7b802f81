"""The second bench data set: compressible chat logs (issue 18).

Real chatbot logs repeat themselves: the same prompts asked again and again (support
questions, "summarise this", "fix my code"), assistant replies in Markdown built on a few
shapes (headings, numbered steps, bullet lists, tables, fenced code), JSON tool calls and
results with the same keys every time. Here the user turns come from ~150 prompt
templates with a few slots filled, the replies from Markdown skeletons filled from a small
vocabulary, some of them quoting a JSON payload. `pg_dump | gzip -6` packs this about 7x
(the prose set of datasets.py: 2.9x), which is where a slow compressor shows.

`fragments()` returns the same two pools as datasets.fragments() (user-like, assistant-
like), so both generators (PostgreSQL and SQLite) build this set with the same SQL.
"""

from __future__ import annotations

import json
import random

SHORT_FRAGMENTS = 12_000
LONG_FRAGMENTS = 12_000

_TOPICS = (
    "my order",
    "the invoice",
    "password reset",
    "the API key",
    "the webhook",
    "billing",
    "the dashboard",
    "two-factor login",
    "the mobile app",
    "the export",
    "my subscription",
    "the refund",
    "the integration",
    "the CSV import",
    "rate limits",
    "the SDK",
)
_LANGS = ("python", "javascript", "sql", "bash", "typescript")
_VERBS = ("explain", "summarise", "rewrite", "translate", "fix", "review", "shorten", "format")
_PROMPTS = (
    "How do I {verb} {topic}?",
    "Can you {verb} this for me: {topic} is not working since yesterday.",
    "Please {verb} the following text in a friendly tone.",
    "I get an error with {topic}. What should I do?",
    "Write a {lang} function that checks {topic}.",
    "What is the difference between {topic} and {topic2}?",
    "Summarise this conversation in three bullet points.",
    "Translate to French: Thank you for contacting support about {topic}.",
    "Why is {topic} so slow today?",
    "Give me a checklist for {topic}.",
)
_WORDS = (
    "settings",
    "account",
    "request",
    "response",
    "token",
    "timeout",
    "retry",
    "status",
    "customer",
    "support",
    "update",
    "version",
    "config",
    "server",
    "client",
    "error",
    "message",
    "session",
    "user",
    "admin",
    "page",
    "button",
    "field",
    "value",
    "record",
)


def _prompt(rng: random.Random) -> str:
    text = rng.choice(_PROMPTS).format(
        verb=rng.choice(_VERBS),
        topic=rng.choice(_TOPICS),
        topic2=rng.choice(_TOPICS),
        lang=rng.choice(_LANGS),
    )
    if rng.random() < 0.3:  # a pasted system prompt / instruction block, repeated verbatim
        text += (
            "\n\nYou are a helpful assistant for Acme Cloud. Answer in Markdown, be concise, "
            "never share internal URLs, and ask for the order number when it is missing."
        )
    return text


_SENTENCES: list[str] = []


def _line(rng: random.Random) -> str:
    """One of a few hundred stock sentences: replies reuse whole phrases, as real ones do."""
    if not _SENTENCES:
        pool = random.Random(7)
        for _ in range(400):
            words = pool.choices(_WORDS, k=pool.randint(5, 12))
            _SENTENCES.append(f"Check the {' '.join(words)} and try again.")
    return rng.choice(_SENTENCES)


def _json_payload(rng: random.Random) -> str:
    payload = {
        "tool": rng.choice(("lookup_order", "reset_password", "get_invoice", "search_docs")),
        "arguments": {"customer_id": rng.randint(1000, 1100), "topic": rng.choice(_TOPICS)},
        "result": {"status": rng.choice(("ok", "ok", "ok", "not_found")), "items": []},
    }
    return "```json\n" + json.dumps(payload, indent=2) + "\n```\n"


def _reply(rng: random.Random, length: int) -> str:
    topic = rng.choice(_TOPICS)
    parts = [f"## {rng.choice(_VERBS).capitalize()} {topic}\n\nHere is what you can do:\n\n"]
    size = len(parts[0])
    step = 1
    while size < length:
        roll = rng.random()
        if roll < 0.45:
            piece = f"{step}. **{rng.choice(_WORDS).capitalize()}**: {_line(rng)}\n"
            step += 1
        elif roll < 0.7:
            piece = f"- {_line(rng)}\n"
        elif roll < 0.82:
            piece = _json_payload(rng)
        elif roll < 0.92:
            name = rng.choice(_WORDS)
            piece = (
                f"\n```{rng.choice(_LANGS)}\ndef check_{name}(value):\n"
                f"    if value is None:\n        raise ValueError('{name} is required')\n"
                f"    return value\n```\n"
            )
        else:
            piece = (
                "\n| setting | value |\n|---|---|\n"
                f"| {rng.choice(_WORDS)} | {rng.randint(1, 100)} |\n"
                f"| {rng.choice(_WORDS)} | {rng.choice(('on', 'off'))} |\n\n"
            )
        parts.append(piece)
        size += len(piece)
    parts.append("\nLet me know if you need anything else!")
    return "".join(parts)


def fragments(seed: int = 20261201) -> tuple[list[str], list[str]]:
    """(user-like prompts, assistant-like Markdown replies), deterministic."""
    rng = random.Random(seed)
    short = [_prompt(rng) for _ in range(SHORT_FRAGMENTS)]
    long = [
        _reply(rng, int(min(12000, rng.lognormvariate(6.8, 0.75))) + 40)
        for _ in range(LONG_FRAGMENTS)
    ]
    return short, long
