"""Detection: the timer's cycle over IoT Central's export status and Log Analytics' FailedIngestion
rows, and dispatching one remediation per failing target."""
