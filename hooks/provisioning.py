"""What `azd provision` does around the Bicep: the steps a template cannot make idempotent or
cannot make wait, each one "look, then create only what is missing", safe to run on every
`azd up`.

- preprovision: the first-party action groups service principal exists in the tenant (the Bicep
  references it `existing`; Microsoft's secure-webhook script creates it the same way where it is
  missing).
- postprovision: the healer's identity is Database Admin on each ADX database in ADX_DATABASES,
  waiting (bounded) until Entra has replicated the new identity to ADX; and, with alerts on, the
  action groups service principal holds the webhook application's app role.

Microsoft Graph and ARM REST through azure-core pipelines, signed in as whoever runs azd
(`azd auth login`; the Azure CLI as a fallback). Nothing here prints a token.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline.transport import HttpTransport
    from azure.core.rest import HttpRequest, HttpResponse

log = logging.getLogger("iotc-adx-healer.hooks")
T = TypeVar("T")

GRAPH_URL = "https://graph.microsoft.com"
ARM_URL = "https://management.azure.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
ARM_SCOPE = "https://management.azure.com/.default"
# The first-party application Azure Monitor action groups call secure webhooks as (Microsoft
# Learn, "Action groups": the secure webhook PowerShell script).
ACTION_GROUPS_APP_ID = "461e8683-5575-4561-ac7f-899cc907d62a"
KUSTO_API_VERSION = "2023-08-15"
# Bicep's guid(a, b, c) is the v5 UUID of 'a-b-c' in this namespace (Bicep's string functions
# reference): the hook names an assignment as infra/modules/adx-access.bicep would.
ARM_GUID_NAMESPACE = uuid.UUID("11fb06fb-712d-4ddd-98c7-e71bbd588830")

_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_CLUSTER_ID = re.compile(
    r"/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[\w.()\-]{1,90}/providers/Microsoft\.Kusto/clusters/[a-z][a-z0-9]{3,21}",
    re.IGNORECASE,
)
# ADX database names: letters, digits, spaces, dots, dashes, underscores (up to 260).
_DATABASE = re.compile(r"[A-Za-z0-9_.\- ]{1,260}")
# Refusals that mean "not replicated yet": Entra has the new principal, the service reading it
# does not (Kusto: "… of type 'AAD Application Id' was not found"; Graph: "… does not exist", "Not
# a valid reference update"). They are waited out; anything else fails at once.
_NOT_YET = re.compile(
    r"not\s+(?:be\s+)?found|does\s+not\s+exist|could\s+not\s+be\s+(?:found|resolved)|not\s+a\s+valid\s+reference",
    re.IGNORECASE,
)


class HookError(Exception):
    """A step failed for good; the message says which and why (never a token)."""


class NotYet(Exception):
    """A step was refused for a reason that passes with time (replication, a busy cluster)."""


def arm_guid(*parts: str) -> str:
    """Bicep's / ARM's `guid(...)` of these strings."""
    return str(uuid.uuid5(ARM_GUID_NAMESPACE, "-".join(parts)))


@dataclass(frozen=True)
class Waiting:
    """Bounded waiting: retries with doubling delays until `budget_s` is spent, then failure.
    The clock and the sleep are injectable so tests never wait."""

    budget_s: float = 900.0
    first_delay_s: float = 5.0
    max_delay_s: float = 60.0
    poll_s: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def retry(self, what: str, attempt: Callable[[], T]) -> T:
        deadline = self.clock() + self.budget_s
        delay = self.first_delay_s
        tries = 0
        while True:
            tries += 1
            try:
                return attempt()
            except NotYet as exc:
                left = deadline - self.clock()
                if left <= 0:
                    raise HookError(
                        f"{what}: still refused after {tries} attempts in {self.budget_s:.0f} s: {exc}"
                    ) from exc
                log.info("%s: not yet (%s); trying again in %.0f s", what, exc, min(delay, left))
                self.sleep(min(delay, left))
                delay = min(delay * 2, self.max_delay_s)


def _loopback(url: str) -> bool:
    return url.startswith(("http://127.0.0.1", "http://localhost"))


def error_text(body: Any) -> str:
    """`code: message` of a Graph or ARM error body (`{"error": {"code", "message"}}`)."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
    return str(body)[:300]


class Rest:
    """JSON over one azure-core pipeline: bearer token for one scope, retries of 408/429/5xx
    (Retry-After honoured) within a bounded number of attempts."""

    def __init__(
        self,
        base_url: str,
        scope: str,
        credential: TokenCredential,
        *,
        transport: HttpTransport[HttpRequest, HttpResponse] | None = None,
        retry_backoff_s: float = 0.8,
    ) -> None:
        from azure.core import PipelineClient
        from azure.core.pipeline.policies import (
            BearerTokenCredentialPolicy,
            HeadersPolicy,
            RetryPolicy,
            UserAgentPolicy,
        )

        self.base_url = base_url.rstrip("/")
        self._client: PipelineClient[HttpRequest, HttpResponse] = PipelineClient(
            base_url=self.base_url,
            policies=[
                HeadersPolicy(),
                UserAgentPolicy("iotc-adx-healer-hooks"),
                RetryPolicy(retry_total=4, retry_backoff_factor=retry_backoff_s, retry_backoff_max=30, timeout=300),
                BearerTokenCredentialPolicy(credential, scope),
            ],
            transport=transport,
        )

    def call(
        self, method: str, path: str, *, params: dict[str, str] | None = None, body: Any = None
    ) -> tuple[int, Mapping[str, str], Any]:
        """(status, headers, JSON body or None). Transport failures raise HookError."""
        from azure.core.exceptions import AzureError
        from azure.core.rest import HttpRequest

        url = path if path.startswith(("https://", "http://")) else self.base_url + path
        request = HttpRequest(method, url, params=params, json=body)
        try:
            response = self._client.send_request(request, enforce_https=not _loopback(url))
        except AzureError as exc:
            raise HookError(f"{method} {path}: {type(exc).__name__}: {str(exc)[:300]}") from exc
        text = response.text()
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = text[:300]
        return response.status_code, response.headers, data


# --------------------------------------------------------------------------- Microsoft Graph


def ensure_action_groups_principal(graph: Rest) -> tuple[str, bool]:
    """(object id of the action groups service principal, whether it was created now)."""
    path = f"/v1.0/servicePrincipals(appId='{ACTION_GROUPS_APP_ID}')"
    status, _, body = graph.call("GET", path, params={"$select": "id,appId"})
    if status == 200 and isinstance(body, dict) and body.get("id"):
        return str(body["id"]), False
    if status != 404:
        raise HookError(f"reading the action groups service principal: HTTP {status} {error_text(body)}")
    status, _, body = graph.call("POST", "/v1.0/servicePrincipals", body={"appId": ACTION_GROUPS_APP_ID})
    if status == 201 and isinstance(body, dict) and body.get("id"):
        return str(body["id"]), True
    raise HookError(
        f"creating the action groups service principal (appId {ACTION_GROUPS_APP_ID}): HTTP {status} "
        f"{error_text(body)}; it needs an Entra role that may create service principals "
        "(Cloud Application Administrator or Application Administrator)"
    )


def ensure_app_role_assignment(
    graph: Rest, *, resource_id: str, principal_id: str, app_role_id: str, waiting: Waiting
) -> bool:
    """The app role `app_role_id` of service principal `resource_id` is assigned to
    `principal_id`; True if it was assigned now, False if it already was."""
    for name, value in (("resource_id", resource_id), ("principal_id", principal_id), ("app_role_id", app_role_id)):
        if not _GUID.fullmatch(value):
            raise HookError(f"{name}={value!r} is not a GUID")
    collection = f"/v1.0/servicePrincipals/{resource_id}/appRoleAssignedTo"

    def assigned() -> bool:
        url: str | None = collection
        while url:
            status, _, body = graph.call("GET", url)
            if status == 404:  # the webhook's service principal is new and not replicated yet
                raise NotYet(error_text(body))
            if status != 200 or not isinstance(body, dict):
                raise HookError(f"listing the app role assignments: HTTP {status} {error_text(body)}")
            for row in body.get("value") or []:
                if (
                    str(row.get("principalId", "")).lower() == principal_id.lower()
                    and str(row.get("appRoleId", "")).lower() == app_role_id.lower()
                ):
                    return True
            url = body.get("@odata.nextLink")
        return False

    def attempt() -> bool:
        if assigned():
            return False
        payload = {"principalId": principal_id, "resourceId": resource_id, "appRoleId": app_role_id}
        status, _, body = graph.call("POST", collection, body=payload)
        if status == 201:
            return True
        message = error_text(body)
        if status in (400, 404) and _NOT_YET.search(message):
            raise NotYet(message)
        raise HookError(f"assigning the app role {app_role_id}: HTTP {status} {message}")

    return waiting.retry("the action groups app role", attempt)


# --------------------------------------------------------------------------- ADX (ARM)


def _operation_outcome(arm: Rest, headers: Mapping[str, str], waiting: Waiting, what: str) -> None:
    """Wait for an ARM asynchronous operation (Azure-AsyncOperation) to end; NotYet or HookError
    if it failed."""
    # ARM's asynchronous operations: Azure-AsyncOperation answers {"status": …}; Location answers
    # 202 while running and 200 when done (Azure Resource Manager, "Track asynchronous operations").
    by_status = headers.get("Azure-AsyncOperation")
    url = by_status or headers.get("Location")
    if not url:
        return
    deadline = waiting.clock() + waiting.budget_s
    while True:
        status, _, body = arm.call("GET", url)
        if not by_status and status in (200, 201, 204):
            return
        state = str(body.get("status", "")) if isinstance(body, dict) else ""
        if status == 200 and state.lower() == "succeeded":
            return
        if status == 200 and state.lower() in ("failed", "canceled"):
            message = error_text(body)
            if _NOT_YET.search(message):
                raise NotYet(message)
            raise HookError(f"{what}: the operation {state.lower()}: {message}")
        if status not in (200, 202):
            if not by_status and _NOT_YET.search(error_text(body)):
                raise NotYet(error_text(body))
            raise HookError(f"{what}: reading the operation: HTTP {status} {error_text(body)}")
        if waiting.clock() >= deadline:
            raise HookError(f"{what}: the operation did not end within {waiting.budget_s:.0f} s")
        waiting.sleep(waiting.poll_s)


def grant_database_admin(
    arm: Rest, *, cluster_id: str, database: str, client_id: str, tenant_id: str, waiting: Waiting
) -> bool:
    """The app `client_id` is Database Admin on `database` (a database principal assignment, the
    one infra/modules/adx-access.bicep would make, by the same name); True if granted now, False
    if it already was (by whatever name)."""
    if not _CLUSTER_ID.fullmatch(cluster_id):
        raise HookError(f"cluster_id={cluster_id!r} is not an ADX cluster resource id")
    if not _DATABASE.fullmatch(database) or database.strip() != database:
        raise HookError(f"database={database!r} is not an ADX database name")
    for name, value in (("client_id", client_id), ("tenant_id", tenant_id)):
        if not _GUID.fullmatch(value):
            raise HookError(f"{name}={value!r} is not a GUID")
    collection = f"{cluster_id}/databases/{quote(database, safe='')}/principalAssignments"
    api = {"api-version": KUSTO_API_VERSION}
    what = f"Database Admin on {database}"

    def granted() -> bool:
        status, _, body = arm.call("GET", collection, params=api)
        if status != 200 or not isinstance(body, dict):
            raise HookError(f"{what}: listing the principal assignments: HTTP {status} {error_text(body)}")
        for row in body.get("value") or []:
            props = row.get("properties") or {}
            if str(props.get("principalId", "")).lower() == client_id.lower() and props.get("role") == "Admin":
                return True
        return False

    def attempt() -> bool:
        if granted():
            return False
        name = arm_guid(cluster_id, database, client_id)
        payload = {
            "properties": {"principalId": client_id, "principalType": "App", "role": "Admin", "tenantId": tenant_id}
        }
        status, headers, body = arm.call("PUT", f"{collection}/{name}", params=api, body=payload)
        if status in (200, 201, 202):
            _operation_outcome(arm, headers, waiting, what)
            return True
        message = error_text(body)
        # 409: another operation holds the cluster (one principal change at a time).
        if status == 409 or (status in (400, 404) and _NOT_YET.search(message)):
            raise NotYet(message)
        raise HookError(f"{what}: HTTP {status} {message}")

    return waiting.retry(what, attempt)


# --------------------------------------------------------------------------- the hooks


def databases_of(value: str) -> list[str]:
    """ADX_DATABASES as main.bicep reads it: comma-separated, trimmed, empty ones dropped."""
    return [d.strip() for d in value.split(",") if d.strip()]


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise HookError(f"{name} is not set in the azd environment (an output of infra/main.bicep)")
    return value


def _enabled(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() == "true"


def default_credential() -> TokenCredential:
    from azure.identity import AzureCliCredential, AzureDeveloperCliCredential, ChainedTokenCredential

    return ChainedTokenCredential(
        AzureDeveloperCliCredential(process_timeout=60), AzureCliCredential(process_timeout=60)
    )


def preprovision(env: Mapping[str, str], graph: Rest | None = None) -> list[str]:
    """What was done (one line each)."""
    if not _enabled(env, "ENABLE_ALERTS"):
        return ["alerts off: nothing to do in Entra"]
    graph = graph or Rest(GRAPH_URL, GRAPH_SCOPE, default_credential())
    object_id, created = ensure_action_groups_principal(graph)
    state = "created" if created else "present"
    return [f"action groups service principal ({ACTION_GROUPS_APP_ID}): {state}, object id {object_id}"]


def postprovision(
    env: Mapping[str, str], arm: Rest | None = None, graph: Rest | None = None, waiting: Waiting | None = None
) -> list[str]:
    """What was done (one line each). Databases one at a time: a cluster takes one principal
    change at a time (the Bicep's @batchSize(1) for the same reason)."""
    waiting = waiting or Waiting()
    done: list[str] = []
    cluster_id = _required(env, "ADX_CLUSTER_ID")
    client_id = _required(env, "HEALER_IDENTITY_CLIENT_ID")
    tenant_id = _required(env, "HEALER_TENANT_ID")
    databases = databases_of(env.get("ADX_DATABASES", ""))
    if not databases:
        raise HookError("ADX_DATABASES is empty: name the databases the healer may repair")
    arm = arm or Rest(ARM_URL, ARM_SCOPE, default_credential())
    for database in databases:
        created = grant_database_admin(
            arm, cluster_id=cluster_id, database=database, client_id=client_id, tenant_id=tenant_id, waiting=waiting
        )
        done.append(f"ADX {database}: Database Admin for {client_id} {'granted' if created else 'present'}")
    if _enabled(env, "ENABLE_ALERTS"):
        graph = graph or Rest(GRAPH_URL, GRAPH_SCOPE, default_credential())
        created = ensure_app_role_assignment(
            graph,
            resource_id=_required(env, "WEBHOOK_PRINCIPAL_ID"),
            principal_id=_required(env, "ACTION_GROUPS_PRINCIPAL_ID"),
            app_role_id=_required(env, "WEBHOOK_APP_ROLE_ID"),
            waiting=waiting,
        )
        done.append(f"app role ActionGroupsSecureWebhook for the action groups: {'assigned' if created else 'present'}")
    return done


def run(step: Callable[[Mapping[str, str]], list[str]], env: Mapping[str, str]) -> int:
    """A hook's exit code: 0 with one line per step done, 1 with the reason (azd stops)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("azure", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        for line in step(env):
            print(line)
    except HookError as exc:
        print(f"error: {exc}")
        return 1
    return 0
