"""Backfill: the telemetry an outage kept out of ADX, recovered from IoT Central's query API.

templates (what to ask for) → planner (queries within the documented limits) → records (the
messages the export would have sent) → export_filter and transform (the rows its destination
would have received) → dedupe (skip what ADX has) →
ingest (azure-kusto-ingest, one ingest-by tag per run) → engine (windows, journal, time budget),
with context (what the target's export and table are, read once per invocation) and progress
(what the journal keeps).
"""
