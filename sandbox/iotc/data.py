"""IoT Central's device side in the stand-in: device templates, devices, the telemetry the app
retains, and the query API (`POST /api/query`, 2022-10-31-preview) with its documented limits.

Sources (MicrosoftDocs/azure-docs, articles/iot-central/core/):
- howto-query-with-rest-api.md: `SELECT … FROM <template id> WHERE WITHIN_WINDOW(…)`, components
  as `component.name`, aliases, TOP, ORDER BY; limits: at most 15 SELECT items, no `*`, at most 10
  logical operations in WHERE, at most 350 characters, telemetry and properties never in one
  query, at most 10,000 telemetry records per answer.
- concepts-quotas-limits.md / AZURE_FACTS: about 1 query request per second per app.
- howto-manage-device-templates-with-rest-api.md: templates carry `capabilityModel.contents`
  and `capabilityModel.extends[].contents`; components are contents of `@type: Component`.
- Retention: telemetry older than 7 days is not available to queries (the current quotas page;
  older revisions said 30).

Unverified, chosen here and marked so the healer must not depend on them: the error code of a
refused query (`InvalidQuery`), the status of a throttled query (429 + Retry-After), whether a
`WITHIN_WINDOW('a/b')` range includes both ends (both here: the healer overlaps windows and
de-duplicates, which is right either way), and whether a record whose selected values are all
absent is returned (not here; absent values are left out of a record, not null).
"""

from __future__ import annotations

import bisect
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import isodate  # type: ignore[import-untyped]

CREATION_TIME = "iothub-creation-time-utc"
CREATION_MARGIN = timedelta(seconds=5)  # how much earlier than enqueued a device's creation time may be
MAX_SELECT_ITEMS = 15
MAX_QUERY_CHARS = 350
MAX_LOGICAL_OPERATORS = 10
MAX_TELEMETRY_RECORDS = 10_000
RETENTION = timedelta(days=7)
QUERY_INTERVAL_S = 1.0


class QueryError(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


def bad_query(message: str) -> QueryError:
    return QueryError(400, "InvalidQuery", message)


def ms(value: datetime) -> datetime:
    """IoT Central's timestamps carry milliseconds."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def iso_ms(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


@dataclass
class Message:
    """One device-to-cloud telemetry message as IoT Central received it."""

    device_id: str
    template_id: str
    enqueued: datetime
    telemetry: dict[str, Any]
    component: str | None = None
    module: str | None = None
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def created(self) -> datetime | None:
        """The device's `iothub-creation-time-utc` message property, when it sent one."""
        raw = self.properties.get(CREATION_TIME)
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC) if raw else None
        except ValueError:
            return None

    def ts(self, reading: str = "enqueued") -> datetime:
        """What `$ts` answers: the enqueued time, or (`reading="creation"`) the device's creation
        time when the message carries one. Which one IoT Central answers is undocumented."""
        return (self.created or self.enqueued) if reading == "creation" else self.enqueued


def telemetry_template(
    template_id: str,
    display_name: str,
    telemetry: list[str],
    components: dict[str, list[str]] | None = None,
    properties: list[str] | None = None,
) -> dict[str, Any]:
    """A device template in the 2022-10-31-preview shape (DTDL v2 capability model)."""
    base = template_id.rsplit(";", 1)[0]
    contents: list[dict[str, Any]] = [
        {"@id": f"{base}:{n};1", "@type": "Telemetry", "name": n, "schema": "double"} for n in telemetry
    ]
    contents += [{"@type": "Property", "name": p, "schema": "string"} for p in properties or []]
    for name, names in (components or {}).items():
        contents.append(
            {
                "@type": "Component",
                "name": name,
                "schema": {
                    "@id": f"{template_id.rsplit(';', 1)[0]}:{name};1",
                    "@type": "Interface",
                    "contents": [
                        {
                            "@id": f"{base}:{name}:{n};1",
                            "@type": ["Telemetry", "NumberValue"],
                            "name": n,
                            "schema": "double",
                        }
                        for n in names
                    ],
                },
            }
        )
    return {
        "@id": template_id,
        "@type": ["ModelDefinition", "DeviceModel"],
        "displayName": display_name,
        "capabilityModel": {
            "@id": f"{template_id.rsplit(';', 1)[0]}:model;1",
            "@type": "Interface",
            "displayName": display_name,
            "contents": contents,
            "extends": [],
        },
    }


def _types(item: dict[str, Any]) -> list[str]:
    kind = item.get("@type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def template_capabilities(template: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(telemetry paths, property paths) of a template; component items as `component.name`."""
    telemetry: set[str] = set()
    props: set[str] = set()
    model = template.get("capabilityModel") or {}
    interfaces = [model, *(model.get("extends") or [])]
    for interface in interfaces:
        for item in interface.get("contents") or []:
            kinds = _types(item)
            if "Telemetry" in kinds:
                telemetry.add(item["name"])
            elif "Property" in kinds:
                props.add(item["name"])
            elif "Component" in kinds and isinstance(item.get("schema"), dict):
                for inner in item["schema"].get("contents") or []:
                    inner_kinds = _types(inner)
                    path = f"{item['name']}.{inner['name']}"
                    if "Telemetry" in inner_kinds:
                        telemetry.add(path)
                    elif "Property" in inner_kinds:
                        props.add(path)
    return telemetry, props


class TelemetryStore:
    """Messages per template, kept sorted by time; older than the retention is gone."""

    def __init__(self, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.now = now
        self._by_template: dict[str, list[Message]] = {}
        self._keys: dict[str, list[datetime]] = {}
        self.lock = threading.Lock()

    def add(self, message: Message) -> None:
        with self.lock:
            items = self._by_template.setdefault(message.template_id, [])
            keys = self._keys.setdefault(message.template_id, [])
            at = bisect.bisect_right(keys, message.enqueued)
            items.insert(at, message)
            keys.insert(at, message.enqueued)

    def between(self, template_id: str, start: datetime, end: datetime) -> list[Message]:
        with self.lock:
            start = max(start, self.now() - RETENTION)
            keys = self._keys.get(template_id, [])
            lo = bisect.bisect_left(keys, start)
            hi = bisect.bisect_right(keys, end)
            return list(self._by_template.get(template_id, [])[lo:hi])

    def shift(self, delta: timedelta) -> None:
        """Move every retained message by `delta` (scenario setup: history set back in time)."""
        with self.lock:
            for template_id, items in self._by_template.items():
                moved = [
                    Message(
                        m.device_id, m.template_id, m.enqueued + delta, m.telemetry, m.component, m.module, m.properties
                    )
                    for m in items
                ]
                self._by_template[template_id] = moved
                self._keys[template_id] = [m.enqueued for m in moved]

    def all(self) -> list[Message]:
        with self.lock:
            return [m for items in self._by_template.values() for m in items]


# ---------------------------------------------------------------------- the query language

_TOKEN = re.compile(r"'[^']*'|\[[^\]]*\]|>=|<=|!=|<>|[=<>(),]|[^\s=<>!(),]+")
_NAME = re.compile(r"^(\$id|\$ts|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)$")
OPERATORS = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<>": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
}


@dataclass
class Query:
    template: str
    items: list[tuple[str, str]]  # (path, output name)
    start: datetime
    end: datetime
    filters: list[Callable[[dict[str, Any]], bool]]
    top: int | None
    order: tuple[str, bool] | None  # (output name, descending)


def _literal(token: str) -> Any:
    if token.startswith("'"):
        return token[1:-1]
    if token.lower() in ("true", "false"):
        return token.lower() == "true"
    try:
        return float(token) if "." in token else int(token)
    except ValueError as exc:
        raise bad_query(f"'{token}' is not a literal.") from exc


def _window(argument: str, now: datetime) -> tuple[datetime, datetime]:
    text = argument.strip()
    if text.startswith("'") and text.endswith("'"):
        text = text[1:-1]
    try:
        if "/" in text:
            first, second = text.split("/", 1)
            start = isodate.parse_datetime(first).astimezone(UTC)
            end = isodate.parse_datetime(second).astimezone(UTC)
        else:
            end = now
            start = now - isodate.parse_duration(text)
    except (ValueError, isodate.ISO8601Error) as exc:
        raise bad_query(f"WITHIN_WINDOW({argument}) is not an ISO 8601 duration or time range.") from exc
    if start > end:
        raise bad_query(f"WITHIN_WINDOW({argument}) ends before it starts.")
    return start, end


def parse_query(text: str, capabilities: Callable[[str], tuple[set[str], set[str]] | None], now: datetime) -> Query:
    if len(text) > MAX_QUERY_CHARS:
        raise bad_query(f"The query is {len(text)} characters long; at most {MAX_QUERY_CHARS} are allowed.")
    match = re.fullmatch(
        r"\s*SELECT\s+(?P<select>.+?)\s+FROM\s+(?P<source>\S+)(?:\s+WHERE\s+(?P<where>.+?))?"
        r"(?:\s+ORDER\s+BY\s+(?P<order>.+?))?\s*",
        text,
        re.IGNORECASE | re.DOTALL,
    )
    if not match:
        raise bad_query("The query must have the form SELECT … FROM <device template id> [WHERE …] [ORDER BY …].")
    select = match.group("select").strip()
    top = None
    top_match = re.match(r"TOP\s+(\d+)\s+(.*)", select, re.IGNORECASE | re.DOTALL)
    if top_match:
        top, select = int(top_match.group(1)), top_match.group(2)
    raw_items = [i.strip() for i in select.split(",")]
    if any(i == "*" for i in raw_items):
        raise bad_query("The wildcard operator '*' is not supported in the SELECT clause.")
    if len(raw_items) > MAX_SELECT_ITEMS:
        raise bad_query(f"The SELECT clause has {len(raw_items)} items; at most {MAX_SELECT_ITEMS} are allowed.")
    caps = capabilities(match.group("source"))
    if caps is None:
        raise QueryError(404, "NotFound", f"Device template '{match.group('source')}' was not found.")
    telemetry, props = caps
    items: list[tuple[str, str]] = []
    for raw in raw_items:
        parts = re.split(r"\s+AS\s+", raw, flags=re.IGNORECASE)
        path = parts[0].strip()
        if "(" in path:
            raise bad_query("Aggregations are not supported by this stand-in.")
        if not _NAME.match(path):
            raise bad_query(f"'{path}' is not a valid SELECT item.")
        if path not in ("$id", "$ts") and path not in telemetry | props:
            raise bad_query(f"'{path}' is not a capability of the device template.")
        items.append((path, parts[1].strip() if len(parts) > 1 else path))
    kinds = {"telemetry" if p in telemetry else "property" for p, _ in items if p not in ("$id", "$ts")}
    if len(kinds) > 1:
        raise bad_query("A query selects telemetry or properties, not both.")
    start, end = now - RETENTION, now
    filters: list[Callable[[dict[str, Any]], bool]] = []
    if match.group("where"):
        tokens = _TOKEN.findall(match.group("where"))
        logical = sum(1 for t in tokens if t.upper() in ("AND", "OR"))
        if logical > MAX_LOGICAL_OPERATORS:
            raise bad_query(f"The WHERE clause has {logical} logical operations; at most {MAX_LOGICAL_OPERATORS}.")
        if any(t.upper() == "OR" for t in tokens):
            raise bad_query("OR is not supported by this stand-in.")
        aliases = {alias: path for path, alias in items}
        clause: list[str] = []
        for token in [*tokens, "AND"]:
            if token.upper() != "AND":
                clause.append(token)
                continue
            if clause[:2] == ["WITHIN_WINDOW", "("] or clause[0].upper() == "WITHIN_WINDOW":
                start, end = _window("".join(clause[2:-1]), now)
            elif len(clause) >= 3 and clause[1].upper() == "IN":
                field_name = aliases.get(clause[0], clause[0])
                values = {v.strip("'") for v in "".join(clause[2:]).strip("[]").split(",")}
                filters.append(lambda r, f=field_name, v=values: r.get(f) in v)  # type: ignore[misc]
            elif len(clause) == 3 and clause[1] in OPERATORS:
                field_name = aliases.get(clause[0], clause[0])
                value = _literal(clause[2])
                op = OPERATORS[clause[1]]
                filters.append(lambda r, f=field_name, v=value, o=op: r.get(f) is not None and o(r[f], v))  # type: ignore[misc]
            else:
                raise bad_query(f"'{' '.join(clause)}' is not a supported condition.")
            clause = []
    order = None
    if match.group("order"):
        words = match.group("order").split()
        order = (words[0], len(words) > 1 and words[1].upper() == "DESC")
    return Query(match.group("source"), items, start, end, filters, top, order)


def run_query(
    query: Query, messages: list[Message], ts_reading: str = "enqueued", component_keys: str = "path"
) -> list[dict[str, Any]]:
    """One record per message that carries at least one selected telemetry value, in the window
    by its `$ts` (`ts_reading`). A component's capability asked for without an alias is answered
    under its path (`component_keys="path"`) or its bare name ("name"): undocumented."""
    results: list[dict[str, Any]] = []
    selected = [
        (p, a if a != p or component_keys == "path" else p.rpartition(".")[2])
        for p, a in query.items
        if p not in ("$id", "$ts")
    ]
    for message in messages:
        if not query.start <= message.ts(ts_reading) <= query.end:
            continue
        values: dict[str, Any] = {}
        for path, alias in selected:
            component, _, name = path.rpartition(".")
            if (component or None) == message.component and name in message.telemetry:
                values[alias] = message.telemetry[name]
        if selected and not values:
            continue
        record: dict[str, Any] = {}
        for path, alias in query.items:
            if path == "$id":
                record[alias] = message.device_id
            elif path == "$ts":
                record[alias] = iso_ms(message.ts(ts_reading))
        record.update(values)
        probe = {**record, "$id": message.device_id}
        if all(f(probe) for f in query.filters):
            results.append(record)
    if query.order:
        name, descending = query.order
        results.sort(key=lambda r: (r.get(name) is None, r.get(name)), reverse=descending)
    limit = min(query.top or MAX_TELEMETRY_RECORDS, MAX_TELEMETRY_RECORDS)
    return results[:limit]


class QueryThrottle:
    """About one query request per second per app (a token bucket of one)."""

    def __init__(self, interval_s: float = QUERY_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self.refused = 0

    def admit(self, app: str) -> None:
        with self._lock:
            now = self.clock()
            last = self._last.get(app)
            if last is not None and now - last < self.interval_s:
                self.refused += 1
                raise QueryError(
                    429, "TooManyRequests", "Rate limit exceeded.", retry_after_s=self.interval_s - (now - last)
                )
            self._last[app] = now
