"""The azd hooks (hooks/provisioning.py) against a loopback stand-in of the ARM and Microsoft Graph
calls they make, through their real azure-core pipelines: the first run waits out an identity
ADX does not see yet (bounded, with the clock and sleep injected so nothing waits), a second run
changes nothing, and refusals that time does not cure fail at once naming the step."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.core.credentials import AccessToken

from hooks.provisioning import (
    ACTION_GROUPS_APP_ID,
    GRAPH_SCOPE,
    HookError,
    Rest,
    Waiting,
    arm_guid,
    databases_of,
    postprovision,
    preprovision,
    run,
)

SUB = "22222222-2222-4222-8222-222222222222"
CLUSTER = f"/subscriptions/{SUB}/resourceGroups/rg-adx/providers/Microsoft.Kusto/clusters/adxprod"
CLIENT = "33333333-3333-4333-8333-333333333333"
TENANT = "44444444-4444-4444-8444-444444444444"
WEBHOOK_SP = "55555555-5555-4555-8555-555555555555"
ROLE = "66666666-6666-4666-8666-666666666666"
NOT_FOUND = "Entity ID '33333333-3333-4333-8333-333333333333' of type 'AAD Application Id' was not found"


@dataclass
class Azure:
    """What the stand-in holds and how it answers (per test)."""

    assignments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # database → rows
    unreplicated_puts: int = 0  # PUTs refused before the identity is visible to ADX
    # how a not-yet is told: "async" (the Azure-AsyncOperation fails), "location" (the Location
    # answers an error), or "sync" (the PUT gets 400)
    refusal: str = "async"
    put_status: int | None = None  # force an answer to every PUT (403, 409…)
    action_groups_sp: str | None = None
    role_rows: list[dict[str, Any]] = field(default_factory=list)
    unreplicated_posts: int = 0
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    authorized: list[str] = field(default_factory=list)

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p in self.requests if m in ("PUT", "POST", "PATCH", "DELETE")]


class Handler(BaseHTTPRequestHandler):
    azure: Azure
    base: str

    def log_message(self, *args: Any) -> None:
        pass

    def reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def handle_any(self) -> None:
        a = self.azure
        path = urlsplit(self.path).path
        a.requests.append((self.command, path))
        a.authorized.append(self.headers.get("Authorization", ""))
        assignments = re.fullmatch(rf"{re.escape(CLUSTER)}/databases/([^/]+)/principalAssignments(?:/([^/]+))?", path)
        if assignments and self.command == "GET" and not assignments.group(2):
            self.reply(200, {"value": a.assignments.get(assignments.group(1), [])})
        elif assignments and self.command == "PUT":
            self.put_assignment(assignments.group(1), assignments.group(2), self.body())
        elif (op := re.fullmatch(r"/locations/([\w-]+)", path)) and self.command == "GET":
            state = a.operations[op.group(1)]
            state["polls"] += 1
            if state["polls"] < 2:
                self.reply(202, None, {"Location": f"{self.base}{path}"})
            elif state["error"]:
                self.reply(400, {"error": {"code": "BadRequest", "message": state["error"]}})
            else:
                self.reply(200, {"properties": {"provisioningState": "Succeeded"}})
        elif (op := re.fullmatch(r"/operations/([\w-]+)", path)) and self.command == "GET":
            state = a.operations[op.group(1)]
            state["polls"] += 1
            if state["polls"] < 2:
                self.reply(200, {"status": "InProgress"})
            elif state["error"]:
                self.reply(200, {"status": "Failed", "error": {"code": "BadRequest", "message": state["error"]}})
            else:
                self.reply(200, {"status": "Succeeded"})
        elif path == f"/v1.0/servicePrincipals(appId='{ACTION_GROUPS_APP_ID}')":
            if a.action_groups_sp:
                self.reply(200, {"id": a.action_groups_sp, "appId": ACTION_GROUPS_APP_ID})
            else:
                self.reply(404, {"error": {"code": "Request_ResourceNotFound", "message": "does not exist"}})
        elif path == "/v1.0/servicePrincipals" and self.command == "POST":
            assert self.body() == {"appId": ACTION_GROUPS_APP_ID}
            a.action_groups_sp = str(uuid.uuid4())
            self.reply(201, {"id": a.action_groups_sp, "appId": ACTION_GROUPS_APP_ID})
        elif path == f"/v1.0/servicePrincipals/{WEBHOOK_SP}/appRoleAssignedTo":
            self.role_assignments()
        else:
            self.reply(404, {"error": {"code": "NotFound", "message": f"{self.command} {path}"}})

    def put_assignment(self, database: str, name: str, body: Any) -> None:
        a = self.azure
        if a.put_status is not None:
            self.reply(a.put_status, {"error": {"code": "Refused", "message": f"HTTP {a.put_status} as asked"}})
            return
        error = ""
        if a.unreplicated_puts > 0:
            a.unreplicated_puts -= 1
            if a.refusal == "sync":
                self.reply(400, {"error": {"code": "BadRequest", "message": NOT_FOUND}})
                return
            error = NOT_FOUND
        else:
            a.assignments.setdefault(database, []).append({"name": name, "properties": body["properties"]})
        op = str(uuid.uuid4())
        a.operations[op] = {"polls": 0, "error": error}
        self.reply(
            201,
            {"name": name, "properties": body["properties"]},
            {"Azure-AsyncOperation": f"{self.base}/operations/{op}"},
        )

    def role_assignments(self) -> None:
        a = self.azure
        if self.command == "GET":
            query = urlsplit(self.path).query
            page = 1 if "page=2" in query else 0
            rows = a.role_rows[page : page + 1] if page == 0 else a.role_rows[1:]
            body: dict[str, Any] = {"value": rows}
            if page == 0 and len(a.role_rows) > 1:
                body["@odata.nextLink"] = f"{self.base}/v1.0/servicePrincipals/{WEBHOOK_SP}/appRoleAssignedTo?page=2"
            self.reply(200, body)
            return
        payload = self.body()
        if a.unreplicated_posts > 0:
            a.unreplicated_posts -= 1
            self.reply(400, {"error": {"code": "Request_BadRequest", "message": "Not a valid reference update."}})
            return
        a.role_rows.append({"id": str(uuid.uuid4()), **payload})
        self.reply(201, a.role_rows[-1])

    do_GET = do_PUT = do_POST = handle_any


class Credential:
    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken("fake-token", 4_102_444_800)


@dataclass
class Clock:
    """Time that passes only when the hook sleeps."""

    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def azure() -> Iterator[tuple[Azure, str]]:
    state = Azure()
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (Handler,), {"azure": state}))
    base = f"http://127.0.0.1:{server.server_port}"
    server.RequestHandlerClass.base = base  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state, base
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def clients(base: str) -> tuple[Rest, Rest, Credential]:
    credential = Credential()
    arm = Rest(base, "https://management.azure.com/.default", credential, retry_backoff_s=0)
    graph = Rest(base, GRAPH_SCOPE, credential, retry_backoff_s=0)
    return arm, graph, credential


def env(**extra: str) -> dict[str, str]:
    return {
        "ADX_CLUSTER_ID": CLUSTER,
        "HEALER_IDENTITY_CLIENT_ID": CLIENT,
        "HEALER_TENANT_ID": TENANT,
        "ADX_DATABASES": " devicedata, plantdata ,",
        **extra,
    }


def waiting(clock: Clock, budget: float = 900.0) -> Waiting:
    return Waiting(budget_s=budget, first_delay_s=5, max_delay_s=60, poll_s=2, sleep=clock.sleep, clock=clock.clock)


@pytest.mark.parametrize("refusal", ["async", "location", "sync"])
def test_the_first_run_waits_for_the_identity_and_a_second_run_changes_nothing(
    azure: tuple[Azure, str], refusal: str
) -> None:
    state, base = azure
    state.unreplicated_puts, state.refusal = 3, refusal
    arm, graph, credential = clients(base)
    clock = Clock()
    first = postprovision(env(), arm=arm, graph=graph, waiting=waiting(clock))
    assert first == [
        f"ADX devicedata: Database Admin for {CLIENT} granted",
        f"ADX plantdata: Database Admin for {CLIENT} granted",
    ]
    # Waited, with doubling delays, only while ADX did not see the identity.
    assert [s for s in clock.slept if s != 2] == [5, 10, 20]
    for database in ("devicedata", "plantdata"):
        (row,) = state.assignments[database]
        # The name the Bicep would give it: guid(cluster.id, db, healerClientId).
        assert row["name"] == arm_guid(CLUSTER, database, CLIENT)
        assert row["properties"] == {"principalId": CLIENT, "principalType": "App", "role": "Admin", "tenantId": TENANT}
    assert set(credential.scopes) == {"https://management.azure.com/.default"}
    assert all(h == "Bearer fake-token" for h in state.authorized)
    writes = len(state.writes())
    clock.slept.clear()
    second = postprovision(env(), arm=arm, graph=graph, waiting=waiting(clock))
    assert second == [
        f"ADX devicedata: Database Admin for {CLIENT} present",
        f"ADX plantdata: Database Admin for {CLIENT} present",
    ]
    assert len(state.writes()) == writes and clock.slept == []


def test_an_assignment_made_under_another_name_is_left_alone(azure: tuple[Azure, str]) -> None:
    state, base = azure
    props = {"principalId": CLIENT.upper(), "principalType": "App", "role": "Admin", "tenantId": TENANT}
    state.assignments = {db: [{"name": "by-hand", "properties": props}] for db in ("devicedata", "plantdata")}
    arm, graph, _ = clients(base)
    done = postprovision(env(), arm=arm, graph=graph, waiting=waiting(Clock()))
    assert all(line.endswith("present") for line in done) and state.writes() == []


def test_the_wait_is_bounded_and_says_what_is_still_refused(azure: tuple[Azure, str]) -> None:
    state, base = azure
    state.unreplicated_puts, state.refusal = 10_000, "sync"
    arm, graph, _ = clients(base)
    clock = Clock()
    with pytest.raises(HookError) as caught:
        postprovision(env(), arm=arm, graph=graph, waiting=waiting(clock, budget=300))
    message = str(caught.value)
    assert "Database Admin on devicedata" in message and "was not found" in message and "300 s" in message
    assert sum(clock.slept) <= 300 and clock.now <= 300
    assert "plantdata" not in json.dumps(state.requests)  # stopped at the first database


@pytest.mark.parametrize("status", [403, 400])
def test_a_refusal_time_does_not_cure_fails_at_once(azure: tuple[Azure, str], status: int) -> None:
    state, base = azure
    state.put_status = status
    arm, graph, _ = clients(base)
    clock = Clock()
    with pytest.raises(HookError, match=rf"Database Admin on devicedata: HTTP {status}"):
        postprovision(env(), arm=arm, graph=graph, waiting=waiting(clock))
    assert clock.slept == [] and len(state.writes()) == 1


def test_a_busy_cluster_is_waited_for(azure: tuple[Azure, str]) -> None:
    state, base = azure
    state.put_status = 409
    arm, graph, _ = clients(base)
    clock = Clock()
    with pytest.raises(HookError, match="still refused"):
        postprovision(env(), arm=arm, graph=graph, waiting=waiting(clock, budget=60))
    assert len(clock.slept) >= 2


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("ADX_CLUSTER_ID", f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Web/sites/x", "cluster_id"),
        ("ADX_DATABASES", "devicedata/../../x", "database"),
        ("HEALER_IDENTITY_CLIENT_ID", "not-a-guid", "client_id"),
        ("ADX_DATABASES", " , ", "ADX_DATABASES is empty"),
        ("HEALER_TENANT_ID", "", "HEALER_TENANT_ID is not set"),
    ],
)
def test_bad_inputs_are_refused_before_any_call(azure: tuple[Azure, str], name: str, value: str, why: str) -> None:
    state, base = azure
    arm, graph, _ = clients(base)
    with pytest.raises(HookError, match=why):
        postprovision(env(**{name: value}), arm=arm, graph=graph, waiting=waiting(Clock()))
    assert state.requests == []


def test_databases_are_read_as_main_bicep_reads_them() -> None:
    assert databases_of(" devicedata, plantdata ,,") == ["devicedata", "plantdata"]


def test_preprovision_creates_the_action_groups_principal_only_where_missing(azure: tuple[Azure, str]) -> None:
    state, base = azure
    _, graph, credential = clients(base)
    assert preprovision({"ENABLE_ALERTS": "false"}, graph=graph) == ["alerts off: nothing to do in Entra"]
    assert state.requests == []
    (created,) = preprovision({"ENABLE_ALERTS": "true"}, graph=graph)
    assert "created" in created and state.action_groups_sp and state.action_groups_sp in created
    (again,) = preprovision({"ENABLE_ALERTS": "true"}, graph=graph)
    assert "present" in again
    assert [w for w in state.writes()] == [("POST", "/v1.0/servicePrincipals")]
    assert set(credential.scopes) == {GRAPH_SCOPE}


def test_the_app_role_is_assigned_once_waiting_for_replication(azure: tuple[Azure, str]) -> None:
    state, base = azure
    state.action_groups_sp = "77777777-7777-4777-8777-777777777777"
    # Someone else's assignment on the first page: the healer's is looked for on every page.
    state.role_rows = [{"id": "x", "principalId": str(uuid.uuid4()), "resourceId": WEBHOOK_SP, "appRoleId": ROLE}]
    state.unreplicated_posts = 2
    arm, graph, _ = clients(base)
    hooks_env = env(
        ENABLE_ALERTS="true",
        WEBHOOK_PRINCIPAL_ID=WEBHOOK_SP,
        WEBHOOK_APP_ROLE_ID=ROLE,
        ACTION_GROUPS_PRINCIPAL_ID=state.action_groups_sp,
    )
    clock = Clock()
    first = postprovision(hooks_env, arm=arm, graph=graph, waiting=waiting(clock))
    assert first[-1] == "app role ActionGroupsSecureWebhook for the action groups: assigned"
    mine = [r for r in state.role_rows if r["principalId"] == state.action_groups_sp]
    assert len(mine) == 1 and mine[0]["appRoleId"] == ROLE and mine[0]["resourceId"] == WEBHOOK_SP
    posts = [w for w in state.writes() if w[0] == "POST"]
    assert len(posts) == 3 and 5 in clock.slept and 10 in clock.slept
    second = postprovision(hooks_env, arm=arm, graph=graph, waiting=waiting(Clock()))
    assert second[-1].endswith("present")
    assert [w for w in state.writes() if w[0] == "POST"] == posts  # a second run adds nothing
    assert len(state.role_rows) == 2


def test_run_reports_the_reason_and_fails_without_a_trace(capsys: pytest.CaptureFixture[str]) -> None:
    def broken(env: Any) -> list[str]:
        raise HookError("ADX_CLUSTER_ID is not set in the azd environment")

    assert run(broken, {}) == 1
    out = capsys.readouterr().out
    assert out.startswith("error: ADX_CLUSTER_ID") and "Traceback" not in out
    assert run(lambda env: ["one", "two"], {}) == 0
    assert capsys.readouterr().out == "one\ntwo\n"
