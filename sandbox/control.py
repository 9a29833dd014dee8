"""The sandbox's control API (its own, no Azure service's): the state for people, the endpoints and
the healer's targets, scenario and transport faults, a tick of the exporter, and the test receiver
of the healer's notification webhook."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from sandbox import scenarios
from sandbox.faults import SERVICES
from sandbox.healer_config import targets_for
from sandbox.httpserver import json_response
from sandbox.scenarios import SCENARIO_FAULTS

if TYPE_CHECKING:
    from sandbox.stage import Stage


class Control:
    def __init__(self, world: Stage) -> None:
        self.world = world

    def __call__(self, request: Request) -> Response:
        world = self.world
        try:
            body = request.get_json(silent=True) if request.method == "POST" else None
            if request.path == "/state" and request.method == "GET":
                return json_response(state(world))
            if request.path == "/endpoints" and request.method == "GET":
                return json_response(world.endpoints())
            if request.path == "/healer-targets" and request.method == "GET":
                return json_response(targets_for(world))
            if request.path.startswith("/webhook/incoming/") and request.method == "POST":
                return self._webhook(request)
            if request.path == "/webhook/received" and request.method == "GET":
                with world.lock:
                    return json_response(list(world.notifications))
            if request.path == "/exporter/tick" and request.method == "POST":
                return json_response(world.export_once())
            if request.path == "/faults" and request.method == "POST":
                if not isinstance(body, dict) or not isinstance(body.get("kind"), str):
                    return json_response({"error": "body must be JSON with 'kind'"}, 400)
                kind = body["kind"]
                if kind in SCENARIO_FAULTS:
                    scenarios.inject(world, kind, str(body.get("app", "")))
                elif kind == "transport":
                    params = {k: v for k, v in body.items() if k not in ("kind", "service")}
                    world.set_transport(str(body.get("service", "")), **params)
                else:
                    return json_response({"error": f"kind must be one of {', '.join(SCENARIO_FAULTS)}, transport"}, 400)
                return json_response({"injected": kind}, 201)
            if request.path == "/faults/clear" and request.method == "POST":
                if not isinstance(body, dict):
                    return json_response({"error": "body must be JSON"}, 400)
                if body.get("kind") == "transport":
                    world.faults.clear_transport(body.get("service"))
                else:
                    scenarios.clear(world, str(body.get("kind")), str(body.get("app")))
                return json_response({"cleared": body.get("kind")})
            return json_response({"error": f"no route {request.method} {request.path}"}, 404)
        except (ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, 400)

    def _webhook(self, request: Request) -> Response:
        """Like Slack's incoming webhooks: the secret is the URL's last segment; a body without
        "text" gets 400 no_text, a good one 200 "ok"."""
        world = self.world
        if request.path.rsplit("/", 1)[-1] != world.webhook_token:
            return _webhook_answer(403, "invalid_token")
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"]:
            return _webhook_answer(400, "no_text")
        with world.lock:
            world.notifications.append(body)
        return _webhook_answer(200, "ok")


def state(world: Stage) -> dict[str, Any]:
    """The apps, their exports' status, the databases' principals and rows, and the faults on."""
    cluster, iotc = world.cluster, world.iotc
    with cluster.lock, iotc.lock:
        return {
            "apps": {
                app.subdomain: {
                    "identity_object_id": iotc.identity_of(app.subdomain).object_id,
                    "exports": {
                        e["id"]: {
                            "enabled": e.get("enabled"),
                            "status": e.get("status"),
                            "errors": e.get("errors", []),
                        }
                        for e in app.exports.values()
                    },
                }
                for app in iotc.apps.values()
            },
            "databases": {
                db.name: {
                    "principals": [
                        {"role": a.role, "fqn": str(a.fqn), "notes": a.notes, "stale": a.stale} for a in db.principals
                    ],
                    "tables": {
                        t.name: {
                            "rows": len(t.rows),
                            "principals": [{"role": a.role, "fqn": str(a.fqn)} for a in t.principals],
                        }
                        for t in db.tables.values()
                    },
                }
                for db in cluster.databases.values()
            },
            "failed_ingestion_rows": len(world.workspace.tables["FailedIngestion"]),
            "faults": [f"{k[0]}:{k[1]}" for k in world.active],
            "transport": {s: vars(world.faults.transport(s)) for s in SERVICES},
        }


def _webhook_answer(status: int, text: str) -> Response:
    return Response(text, status=status, content_type="text/plain")
