"""The only modules that talk to Azure (ADX, IoT Central, Log Analytics, Storage, ingestion, the
notification webhook) through the real SDKs; the rest reaches them through the composition root
(shared/services.py)."""
