"""Azure Data Explorer: the cluster model, its control commands, KQL, the REST endpoint and ingestion."""
