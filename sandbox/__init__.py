"""Local stand-ins for the Azure services the healer talks to. Never deployed."""
