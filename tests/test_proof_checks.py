"""The monitor's restore-proof check against the samples the metrics file holds."""

from __future__ import annotations

from tasks.monitor.exposition import key
from tasks.monitor.proof_checks import check_restore_proofs

T = 1_764_590_400.0  # 2025-12-01 12:00 UTC


def test_no_proof_recorded_is_ok() -> None:
    found = check_restore_proofs({key("chatbot_backup_count", kind="db"): 3})
    assert (found.name, found.severity) == ("restore-proof", "ok")
    assert "no restore proof" in found.reason


def test_passed_proofs_are_ok_and_named() -> None:
    found = check_restore_proofs(
        {
            key("chatbot_restore_proof_status", kind="db"): 1,
            key("chatbot_last_restore_proof_timestamp_seconds", kind="db"): T,
            key("chatbot_restore_proof_status", kind="full"): 1,
        }
    )
    assert found.severity == "ok"
    assert (
        "db at 2025-12-01 12:00 UTC" in found.reason and "full at an unknown time" in found.reason
    )


def test_one_failed_proof_is_critical_and_names_its_kind() -> None:
    found = check_restore_proofs(
        {
            key("chatbot_restore_proof_status", kind="db"): 1,
            key("chatbot_restore_proof_status", kind="full"): 0,
            key("chatbot_last_restore_proof_timestamp_seconds", kind="full"): T,
        }
    )
    assert found.severity == "critical"
    assert (
        "full (at 2025-12-01 12:00 UTC)" in found.reason
        and "db" not in found.reason.split("backup")[0]
    )
