"""Configuration: the settings model (every HEALER_ setting, validated at start), credentials and
the time budgets of calls."""
