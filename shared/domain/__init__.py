"""The domain, pure: principals and names, targets, diagnosis and checklist, plans, alert payloads,
queue messages, a target's state and what a destination copy is. No Azure SDK, no I/O."""
