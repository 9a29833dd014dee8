"""One module per remedy, mildest first: add the missing role, re-create the destination,
refresh the principal (drop, wait, re-add). Each declares the plan action it carries out, the
phases it owns (shared/runs/phases.py) and how it begins and resumes (shared/runs/remedy.py)."""
