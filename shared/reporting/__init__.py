"""Reporting: what happens after every history record (root cause, telemetry, notifications), the
status of targets and the incident report."""
