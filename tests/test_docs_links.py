"""README.md and docs/ link nothing outside the repository (issue 17, point 7): a clone
must have every page they point at; the README keeps its two fresh-machine commands."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def test_every_link_stays_inside_the_repository() -> None:
    for page in pages():
        for target in LINK.findall(page.read_text()):
            if target.startswith("#"):
                continue
            assert "://" not in target and not target.startswith("/"), (page, target)
            path = (page.parent / target.split("#", 1)[0]).resolve()
            assert path.is_relative_to(REPO), (page, target)
            assert path.exists(), (page, target)


def test_readme_anchors_exist_and_first_lines_are_the_two_commands() -> None:
    text = (REPO / "README.md").read_text()
    headings = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", text, re.M)
    }
    for anchor in re.findall(r"\]\(#([^)]+)\)", text):
        assert anchor in headings, anchor
    lines = text.splitlines()
    assert lines[3].startswith("./scripts/demo") and lines[4].startswith("./scripts/test")
    assert (REPO / "scripts" / "demo").is_file() and (REPO / "scripts" / "test").is_file()
    checked = text.split("## What is checked", 1)[1].split("\n## ", 1)[0]
    for job in (
        "db-backup",
        "backup-all",
        "db-restore",
        "restore-all",
        "test-restore",
        "monitor",
        "offsite-sync",
        "migrate-to-postgres",
        "base-backup",
        "pitr-restore",
    ):
        assert f"| `{job}`" in checked, job
