"""The doctor: a read-only preflight of everything the healer needs before its first incident.

For every known target and app it reads (never changes) the services the healer will act on, with
the same settings and adapters the Function App uses, and says per line: pass, fail or cannot tell
(a transport fault, or a check that depends on one that did not pass), why, and the exact command
that fixes it. Only reads are sent: Kusto `.show` commands and queries, GET requests, a Log
Analytics query; no notification is posted and no storage entity, table or queue is written.

`runner` runs every check and builds the report; `findings` is the report's model (pure); one
module per service holds its checks (`adx`, `iotc`, `storage`, `log_analytics`, `webhooks`), and
`failures` says which failures a retry could answer differently.
"""
