"""Swapping restored folders and files into place by renames, with a way back.

A plan pairs each live path with the staged path that replaces it (or with nothing,
when the backup did not have it). Every staged path already lies on the live path's
filesystem, so carrying the plan out is renames only: the live entry moves aside to a
hidden `.NAME.replaced-TOKEN` sibling, the staged one takes its name. The journal
remembers each rename; `rollback` undoes them in reverse order, `commit` deletes the
replaced copies. Protected paths (the live database, its snapshots, the backup folder,
a folder restored on its own) are never moved, however deep they lie; pre-restore
snapshots anywhere in a restored folder are found first and protected the same way.

Success is what was checked: once every rename is done, each target must be the very
entry that was staged (same device and inode; a removed path gone), and the journal's
`proof` (restore-all: the live tree against the manifest) must pass — else everything
is put back. Copies across filesystems keep hard links between the names they copy.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tasks.core.atomic import exchange_paths, fsync_dir, is_partial
from tasks.core.errors import RestoreError
from tasks.core.naming import is_pre_restore_snapshot
from tasks.restore.journal import fault_point
from tasks.restore.markers import (
    INCOMING_MARKER,
    REPLACED_MARKER,
    STAGING_PREFIX,
    is_restore_leftover,
    remove_entry,
)


def normal(path: Path) -> Path:
    """An absolute path with `.`/`..` folded, links left as they are (compared by text)."""
    return Path(os.path.normpath(path.absolute()))


@dataclass(frozen=True)
class Swap:
    target: Path  # the live path
    incoming: Path | None  # the staged replacement; None: the backup does not have it
    label: str  # e.g. "uploads", "data/cache", "config/.env"


@dataclass
class SwapPlan:
    swaps: list[Swap] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # staged entries left out, with why


def _entries(folder: Path | None) -> set[str]:
    if folder is None or folder.is_symlink() or not folder.is_dir():
        return set()
    return {entry.name for entry in folder.iterdir()}


def plan_tree(
    live_dir: Path, staged_dir: Path | None, protected: Iterable[Path], label: str
) -> SwapPlan:
    """Swaps that make `live_dir`'s content equal `staged_dir`'s, protected paths untouched.

    A live folder that holds a protected path is not swapped whole: the plan descends
    into it and swaps its other entries one by one.
    """
    guarded = {normal(p) for p in protected}
    plan = SwapPlan()
    _plan_into(normal(live_dir), staged_dir, guarded, label, plan)
    return plan


def _plan_into(
    live_dir: Path, staged_dir: Path | None, guarded: set[Path], label: str, plan: SwapPlan
) -> None:
    for name in sorted(_entries(live_dir) | _entries(staged_dir)):
        live = live_dir / name
        staged = staged_dir / name if staged_dir is not None else None
        if staged is not None and not (staged.exists() or staged.is_symlink()):
            staged = None
        where = f"{label}/{name}"
        if is_restore_leftover(name) or is_partial(name):
            # A killed restore's staging or replaced copy may be the only copy of some
            # data, so a restore never moves or deletes it; the operator decides. A
            # partial file is a write in progress (this restore's staged database).
            continue
        if live in guarded:
            if staged is not None:
                plan.skipped.append(
                    f"{where}: kept the live one (restored separately or protected)"
                )
            continue
        holds_guarded = any(live in g.parents for g in guarded)
        if holds_guarded and live.is_dir() and not live.is_symlink():
            if staged is not None and (staged.is_symlink() or not staged.is_dir()):
                plan.skipped.append(f"{where}: not a folder in the backup; kept the live one")
                staged = None
            _plan_into(live, staged, guarded, where, plan)
            continue
        plan.swaps.append(Swap(live, staged, where))


def find_pre_restore_snapshots(folder: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    """Pre-restore snapshots anywhere below `folder` (links not followed), as found.

    They are not in any backup (backup-all never archives them) but are not live-only
    data to remove either: a restore must leave every one where it is.
    """
    skip = {normal(p) for p in exclude}
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if normal(here / d) not in skip]
        for name in filenames + [d for d in dirnames if (here / d).is_symlink()]:
            if is_pre_restore_snapshot(name):
                found.append(here / name)
    return found


class _LinkKeepingCopier:
    """Copies entries across filesystems; names of one inode stay one inode in the copy."""

    def __init__(self) -> None:
        self._first: dict[tuple[int, int], str] = {}  # only files with several names

    def copy_file(self, source: str, target: str) -> str:
        st = os.lstat(source)
        if st.st_nlink > 1:
            first = self._first.get((st.st_dev, st.st_ino))
            if first is not None:
                try:
                    os.link(first, target)
                    return target
                except OSError:
                    pass  # another filesystem again: a copy is the best there is
            else:
                self._first[(st.st_dev, st.st_ino)] = target
        return str(shutil.copy2(source, target))

    def copy_entry(self, source: Path, target: Path) -> None:
        if source.is_symlink():
            os.symlink(os.readlink(source), target)
        elif source.is_dir():
            shutil.copytree(source, target, symlinks=True, copy_function=self.copy_file)
        else:
            self.copy_file(str(source), str(target))


def stage_beside(plan: SwapPlan, token: str) -> SwapPlan:
    """Make every incoming path rename-able onto its target: copy it next to the target
    when it lies on another filesystem. Creates missing parent folders of targets."""
    ready = SwapPlan(skipped=list(plan.skipped))
    copier = _LinkKeepingCopier()
    for swap in plan.swaps:
        incoming = swap.incoming
        if incoming is not None:
            swap.target.parent.mkdir(parents=True, exist_ok=True)
            if os.lstat(incoming).st_dev != os.stat(swap.target.parent).st_dev:
                beside = swap.target.with_name(f".{swap.target.name}{INCOMING_MARKER}{token}")
                copier.copy_entry(incoming, beside)
                incoming = beside
        ready.swaps.append(Swap(swap.target, incoming, swap.label))
    return ready


def discard_incoming(plan: SwapPlan) -> None:
    """Delete the copies `stage_beside` made that were not swapped in (after a failure)."""
    for swap in plan.swaps:
        incoming = swap.incoming
        if incoming is not None and INCOMING_MARKER in incoming.name:
            if incoming.exists() or incoming.is_symlink():
                remove_entry(incoming)


def stash_path(target: Path, token: str) -> Path:
    """Where the live entry waits, hidden, until the restore has passed its commit point."""
    return target.with_name(f".{target.name}{REPLACED_MARKER}{token}")


@dataclass
class _Done:
    swap: Swap
    stash: Path | None
    moved_in: bool = False
    exchanged: bool = False  # exchanged in, live entry still at the staging name


def _identity(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    info = os.lstat(path)
    return info.st_dev, info.st_ino


# Called with the swaps once all are renamed in; raises RestoreError if the live tree is
# not what was meant (restore-all: `tasks.restore.archive.prove_restored_tree`).
SwapProof = Callable[[list[Swap]], None]


class SwapJournal:
    """Carries out a plan by renames and remembers how to undo it."""

    def __init__(self, token: str | None = None, proof: SwapProof | None = None) -> None:
        self.token = token or secrets.token_hex(4)
        self.proof = proof
        self._done: list[_Done] = []

    def apply(self, plan: SwapPlan) -> list[str]:
        """Swap every entry in and prove it; on any error undo what was done and raise
        RestoreError."""
        try:
            staged = [(swap, _identity(swap.incoming)) for swap in plan.swaps]
            for swap in plan.swaps:
                self._swap(swap)
            _check_swapped(staged)
            if self.proof is not None:
                self.proof(plan.swaps)
        except OSError as exc:
            self.rollback()
            raise RestoreError(
                f"could not swap {exc.filename or 'a restored entry'} into place ({exc.strerror}); "
                "everything swapped so far was put back"
            ) from None
        except RestoreError:
            self.rollback()
            raise
        return [swap.label for swap in plan.swaps]

    def _swap(self, swap: Swap) -> None:
        target = swap.target
        live = target.exists() or target.is_symlink()
        if live and swap.incoming is not None and exchange_paths(swap.incoming, target):
            # The live name never goes missing: the restored entry takes it in one step,
            # and the live entry, now at the staging name, then moves aside.
            done = _Done(swap, None, moved_in=True, exchanged=True)
            self._done.append(done)
            fault_point("restored entry exchanged in")
            aside = stash_path(target, self.token)
            os.rename(swap.incoming, aside)
            done.stash, done.exchanged = aside, False
            fault_point("live entry moved aside")
            fsync_dir(target.parent)
            return
        stash: Path | None = None
        if live:
            stash = stash_path(target, self.token)
            os.rename(target, stash)
            fault_point("live entry moved aside")
        done = _Done(swap, stash)
        self._done.append(done)
        if swap.incoming is not None:
            os.rename(swap.incoming, target)
            done.moved_in = True
            fault_point("restored entry moved in")
        fsync_dir(target.parent)

    def rollback(self) -> None:
        """Put every replaced entry back where it was; the restored ones return to staging."""
        problems = []
        for done in reversed(self._done):
            try:
                if done.exchanged and done.swap.incoming is not None:
                    exchange_paths(done.swap.target, done.swap.incoming)
                    continue
                if done.moved_in and done.swap.incoming is not None:
                    os.rename(done.swap.target, done.swap.incoming)
                if done.stash is not None:
                    os.rename(done.stash, done.swap.target)
            except OSError as exc:
                problems.append(f"{done.swap.label}: {exc.strerror}")
        self._done.clear()
        if problems:
            raise RestoreError(
                "restore failed and could not put everything back: " + "; ".join(problems)
            )

    def commit(self) -> None:
        """The restore is proven: delete the replaced copies."""
        for done in self._done:
            if done.stash is not None:
                remove_entry(done.stash)
        self._done.clear()


def _check_swapped(staged: list[tuple[Swap, tuple[int, int] | None]]) -> None:
    """Each target is now the entry that was staged for it (or gone, if none was)."""
    wrong = []
    for swap, identity in staged:
        try:
            now = _identity(swap.target)
        except FileNotFoundError:
            now = None
        if now != identity:
            wrong.append(swap.label)
    if wrong:
        raise RestoreError(
            f"after the swap, {', '.join(wrong[:5])} is not what was staged and checked"
        )


def remove_stale_staging(folder: Path) -> list[Path]:
    """Delete staging folders and incoming copies a killed restore left in `folder`.

    Replaced copies (`.replaced-`) are never deleted here: after a kill they may be the
    only copy of the live data. Call only while holding the backup lock.
    """
    removed = []
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name.startswith(STAGING_PREFIX) or (
                entry.name.startswith(".") and INCOMING_MARKER in entry.name
            ):
                remove_entry(entry)
                removed.append(entry)
    return removed
