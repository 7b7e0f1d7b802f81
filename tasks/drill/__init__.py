"""The DR drill (the guide's quarterly drill): objectives, the scratch database, the report.

Above verify/ and offsite/ in the wings: a drill fetches like a restore, checks like a test
restore, and then measures the result against the guide's RTO and RPO tables.
"""
