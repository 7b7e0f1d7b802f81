"""What an `offsite-verify` run may say about `chatbot_offsite_backup_status`, per kind.

The series answers "is the newest backup of this kind safely off-site at this
destination?" (the ChatbotOffsiteBackupFailing rule). A verification reads back copies
that are already there, so a passing one proves nothing about a newer backup whose
upload failed: were it to set the series to 1, a failed `--offsite` or `offsite-sync`
would be hidden by the next weekly verify while the newest backup is still only local.

So, for each kind the run read back:
- a copy that does not match its sidecar (or never finished) → 0: failed, as before;
- every copy matched, and one of them is the newest good local backup of that kind (or
  newer) → 1: the verification itself proves the newest backup is off-site;
- every copy matched but none proves that → no verdict: the series keeps what the last
  upload recorded (0 stays 0 until a newer upload or verification proves it; 1 stays 1).
"""

from __future__ import annotations

from collections.abc import Iterable

from tasks.catalog.records import BackupRecord
from tasks.offsite.remote import backup_name_of
from tasks.offsite.verify import RemoteCheck

PASSED = ("ok", "archived")


def offsite_status_by_kind(
    checks: Iterable[RemoteCheck], local: Iterable[BackupRecord]
) -> dict[str, bool]:
    """kind → the status to record; a kind left out must keep its current value.

    `checks`: one verification run at one destination; `local`: the local backups (any
    order; only good ones count — what a restore or an upload would use).
    """
    newest_local: dict[str, float] = {}
    for record in local:
        if record.good:
            stamp = record.name.created_at.timestamp()
            newest_local[record.kind] = max(stamp, newest_local.get(record.kind, stamp))
    failed: set[str] = set()
    newest_verified: dict[str, float] = {}
    for check in checks:
        name = backup_name_of(check.remote_name)
        if name is None:
            continue
        if check.status not in PASSED:
            failed.add(name.kind)
            continue
        stamp = name.created_at.timestamp()
        newest_verified[name.kind] = max(stamp, newest_verified.get(name.kind, stamp))
    verdicts = {kind: False for kind in failed}
    for kind, stamp in newest_verified.items():
        if kind in failed or kind not in newest_local:
            continue  # no local backup of that kind to prove: leave the upload's verdict
        if stamp >= newest_local[kind]:
            verdicts[kind] = True
    return verdicts
