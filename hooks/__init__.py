"""azd hooks around `azd provision` (see provisioning.py)."""
