"""The ground floor: errors, settings, names, safe writes, the lock, the clock, redaction, backoff and the retention tiers. Imports nothing of the other wings."""
