"""The workbook and the incident alert rule: deployed by main.bicep, their queries are real Kusto
(Microsoft's parser) over the metric names the healer really emits, and the workbook resource body
has what its schema requires.

The whole body is type-checked with every other resource (test_bicep_types.py, against
applicationinsights_microsoft.insights_2023-06-01.json); here the properties a workbook needs to
show anything (displayName, category, serializedData) and a GUID name are required on top."""

from __future__ import annotations

import json
import re

from shared.reporting import telemetry
from tests.support.bicep_tree import INFRA, children, text, tree
from tests.support.helpers import FIXTURES
from tests.support.kusto_parser import parse_all

WORKBOOK = json.loads((INFRA / "modules" / "healer-workbook.json").read_text())


def _queries() -> dict[str, str]:
    return {i["content"]["title"]: i["content"]["query"] for i in WORKBOOK["items"] if i["type"] == 3}


def _alert_query() -> str:
    source = (INFRA / "modules" / "incident-alerts.bicep").read_text()
    match = re.search(r"query: '(.+)'", source)
    assert match
    return match.group(1)


def test_main_deploys_the_workbook_and_the_incident_alerts() -> None:
    main = (INFRA / "main.bicep").read_text()
    assert "module workbook 'modules/workbook.bicep'" in main
    alerts = (INFRA / "modules" / "alerts.bicep").read_text()
    assert "module incidentAlerts 'incident-alerts.bicep'" in alerts and "actionGroupId: group.id" in alerts


def test_the_workbook_shows_what_people_asked_for() -> None:
    assert WORKBOOK["version"] == "Notebook/1.0" and WORKBOOK["fallbackResourceIds"] == ["__APP_INSIGHTS_ID__"]
    titles = " | ".join(_queries()).lower()
    for wanted in ("remediations over time by outcome", "time to heal", "gaps and recovered rows", "escalations"):
        assert wanted in titles
    assert "top root causes" in titles
    queries = _queries()
    assert 'customDimensions["outcome"]' in queries["Remediations over time by outcome"]


def test_every_query_is_real_kusto_over_emitted_names() -> None:
    queries = [*_queries().values(), _alert_query()]
    results = parse_all(queries)
    assert [(r.text, r.errors) for r in results if not r.ok] == []
    emitted = set(telemetry._COUNTERS) | set(telemetry._HISTOGRAMS) | set(telemetry._GAUGES)
    for query in queries:
        for clause in re.findall(r"name (?:==|in) (\([^)]*\)|\"[^\"]*\")", query):
            for name in re.findall(r'"([^"]+)"', clause):
                assert name in emitted, name
    assert '"healer.incidents"' in _alert_query()


def test_the_incident_alert_lets_the_rule_aggregate() -> None:
    """Microsoft's log-alert query guidance: the query returns rows and the rule aggregates them
    (timeAggregation over metricMeasureColumn, split by the dimensions)."""
    query = _alert_query()
    assert "summarize" not in query and "make-series" not in query
    source = (INFRA / "modules" / "incident-alerts.bicep").read_text()
    measure = re.search(r"metricMeasureColumn: '(\w+)'", source)
    assert measure and re.search(rf"\bproject\b.*\b{measure.group(1)}\b", query)
    for dimension in re.findall(r"\{ name: '(\w+)', operator: 'Include'", source):
        assert re.search(rf"\bproject\b.*\b{dimension}\b", query), dimension


def test_the_workbook_body_matches_its_schema() -> None:
    path = INFRA / "modules" / "workbook.bicep"
    source = path.read_text()
    assert "'Microsoft.Insights/workbooks@2023-06-01'" in source
    resources = [text(path, n) for n in children(tree(path).root_node, "resource_declaration")]
    body = next(r for r in resources if "workbooks@" in r)
    types = FIXTURES / "bicep-types" / "applicationinsights_microsoft.insights_2023-06-01.json"
    nodes = json.loads(types.read_text())
    resource = next(n for n in nodes if n.get("name") == "Microsoft.Insights/workbooks@2023-06-01")
    top = nodes[int(resource["body"]["$ref"].split("/")[-1])]
    required = [k for k, v in top["properties"].items() if v.get("flags", 0) & 1]
    assert {"name", "location"} <= set(required), required
    for key in [*required, "displayName", "category", "serializedData"]:
        assert re.search(rf"^\s*{key}:", body, re.M), key
    assert "name: guid(" in body  # workbook names must be GUIDs


def test_a_message_the_host_poisons_alone_alerts_too() -> None:
    """A delivery that never returns (a killed worker) is poisoned by the host on the next dequeue
    without the function running, so no `poisoned` incident: a rule on the host's own line."""
    source = (INFRA / "modules" / "incident-alerts.bicep").read_text()
    queries = [q for q in re.findall(r"query: '(.+)'", source) if "MaxDequeueCount" in q]
    assert len(queries) == 1 and "'iotc-adx-healer-poisoned-messages'" in source
    assert [(r.text, r.errors) for r in parse_all(queries) if not r.ok] == []
    # The host's line (WebJobs queues extension, QueueProcessor) for this app's queue.
    line = "Message has reached MaxDequeueCount of 5. Moving message to queue 'healer-remediations-poison'."
    assert queries[0].startswith("traces | where ")
    assert "MaxDequeueCount" in line.split() and "-poison" in line
