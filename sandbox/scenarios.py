"""The scenario faults: each breaks one app's export the way operators see it break, as a person
with rights on the cluster or the app would have, and returns how to undo it. `SCENARIO_FAULTS`
maps each fault's name to its function; each has a ledger entry in `sandbox/fidelity.py`."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.adx.diagnostics import role_command
from sandbox.adx.model import Assignment, Fqn, Table
from sandbox.entra import Identity
from sandbox.stage import ActiveFault, Stage, Target

OPERATOR_UPN = "ops-admin@contoso.com"  # the person whose commands the faults stand for


def set_back(world: Stage, subdomain: str, seconds: float, interval_s: float = 1.0) -> int:
    """Scenario setup for a long outage without waiting for it: the app's telemetry and the rows
    its export delivered move `seconds` into the past, and the time since is filled with
    telemetry (one message per device and interface every `interval_s`) that the export never
    delivered. Call it while the export is failing. Returns the messages added."""
    delta = timedelta(seconds=seconds)
    app = world.iotc.apps[subdomain]
    fleet = world.delivery.fleets[subdomain]
    target = world.target(subdomain)
    with world.cluster.lock:
        table = world.cluster.table(target.database, target.table)
        kinds = dict(table.columns)
        for row in table.rows:
            for name, value in row.items():
                if (kinds.get(name) == "datetime" or name == "$IngestionTime") and isinstance(value, datetime):
                    row[name] = value - delta
    app.telemetry.shift(-delta)
    latest = max((m.enqueued for m in app.telemetry.all()), default=datetime.now(UTC) - delta)
    added = 0
    at = latest + timedelta(seconds=interval_s)
    now = datetime.now(UTC)
    while at < now:
        added += len(fleet.tick(app, at))
        at += timedelta(seconds=interval_s)
    return added


def _by_operator(
    world: Stage, database: str, table: str | None, verb: str, role: str, fqns: list[str]
) -> dict[str, str]:
    """A change a person made (the faults): journaled as that person ran it."""
    command = role_command(verb, database, table, f"{role} ({', '.join(fqns)})")
    return world.diagnostics.journal(database, table or database, command, OPERATOR_UPN, OPERATOR_UPN)


def _app_identity(world: Stage, target: Target) -> Identity:
    """The identity the target's destination writes as (the app's, or its service principal)."""
    app = world.iotc.apps[target.subdomain]
    writer = world.delivery.writer_of(app, app.destinations[target.destination_id])
    if writer is None:
        raise ValueError(f"app {target.subdomain!r} writes as an identity Entra does not know")
    return writer


def _app_assignments(world: Stage, target: Target, identity: Identity) -> tuple[list[Assignment], list[Assignment]]:
    db = world.cluster.database(target.database)
    table = db.tables.get(target.table)
    db_rows = [a for a in db.principals if a.held_by(identity)]
    table_rows = [a for a in table.principals if a.held_by(identity)] if table else []
    return db_rows, table_rows


def stale_permission(world: Stage, target: Target) -> ActiveFault:
    identity = _app_identity(world, target)
    db_rows, table_rows = _app_assignments(world, target, identity)
    if not db_rows and not table_rows:
        raise ValueError(f"app {target.subdomain!r} holds no role in {target.database!r} to go stale")
    for a in db_rows + table_rows:
        a.stale = True

    def undo() -> None:
        for a in db_rows + table_rows:
            a.stale = False

    return ActiveFault("stale-permission", target.subdomain, undo)


def principal_removed(world: Stage, target: Target) -> ActiveFault:
    identity = _app_identity(world, target)
    db = world.cluster.database(target.database)
    table = db.tables.get(target.table)
    db_rows, table_rows = _app_assignments(world, target, identity)
    db.principals[:] = [a for a in db.principals if a not in db_rows]
    if table:
        table.principals[:] = [a for a in table.principals if a not in table_rows]
    journal = [
        # The operator types the principal as `.show database … principals` shows it to them.
        _by_operator(
            world,
            target.database,
            None,
            "drop",
            role,
            [a.listed_fqn(world.cluster.list_normalised) for a in db_rows if a.role == role],
        )
        for role in sorted({a.role for a in db_rows})
    ]

    def undo() -> None:
        for a in db_rows:
            world.cluster.grant(target.database, a.role, str(a.fqn), a.notes)
        for a in table_rows:
            world.cluster.grant(target.database, a.role, str(a.fqn), a.notes, table=target.table)

    return ActiveFault(
        "principal-removed",
        target.subdomain,
        undo,
        {"removed": [str(a.fqn) for a in db_rows], "journal": journal},
    )


def identity_rotated(world: Stage, target: Target) -> ActiveFault:
    old = _app_identity(world, target)
    new = world.directory.add(old.rotated())
    event = world.iotc.record_write(target.subdomain, OPERATOR_UPN)

    def undo() -> None:
        world.cluster.grant(
            target.database,
            target.role,
            f"aadapp={new.object_id};{new.tenant_id}",
            f"IoT Central {target.subdomain} data export",
        )

    return ActiveFault(
        "identity-rotated",
        target.subdomain,
        undo,
        {
            "old_object_id": old.object_id,
            "new_object_id": new.object_id,
            "changed_at": event["eventTimestamp"],
            "changed_by": OPERATOR_UPN,
        },
    )


def table_level_only(world: Stage, target: Target) -> ActiveFault:
    identity = _app_identity(world, target)
    db = world.cluster.database(target.database)
    table = world.cluster.table(target.database, target.table)
    db_rows, _ = _app_assignments(world, target, identity)
    db.principals[:] = [a for a in db.principals if a not in db_rows]
    fqn = Fqn.parse(f"aadapp={identity.object_id};{identity.tenant_id}")
    added = world.cluster.assignment("ingestors", fqn, "table-level grant")
    table.principals.append(added)
    journal = [
        _by_operator(world, target.database, None, "drop", role, [str(a.fqn) for a in db_rows if a.role == role])
        for role in sorted({a.role for a in db_rows})
    ]
    journal.append(_by_operator(world, target.database, target.table, "add", "ingestors", [str(fqn)]))

    def undo() -> None:
        if added in table.principals:
            table.principals.remove(added)
        for a in db_rows:
            world.cluster.grant(target.database, a.role, str(a.fqn), a.notes)

    return ActiveFault("table-level-only", target.subdomain, undo, {"journal": journal})


def healer_not_admin(world: Stage, target: Target) -> ActiveFault:
    removed = principal_removed(world, target)
    db = world.cluster.database(target.database)
    healer_rows = [a for a in db.principals if a.held_by(world.healer) and a.role == "admins"]
    db.principals[:] = [a for a in db.principals if a not in healer_rows]
    world.cluster.grant(target.database, "viewers", world.healer.fqn, "iotc-adx-healer (demoted)")
    _by_operator(world, target.database, None, "drop", "admins", [str(a.fqn) for a in healer_rows])
    _by_operator(world, target.database, None, "add", "viewers", [world.healer.fqn])

    def undo() -> None:
        db.principals[:] = [a for a in db.principals if not (a.held_by(world.healer) and a.role == "viewers")]
        for a in healer_rows:
            world.cluster.grant(target.database, a.role, str(a.fqn), a.notes)
        removed.undo()

    return ActiveFault("healer-not-admin", target.subdomain, undo, dict(removed.detail))


def table_missing(world: Stage, target: Target) -> ActiveFault:
    db = world.cluster.database(target.database)
    table: Table | None = db.tables.pop(target.table, None)
    if table is None:
        raise ValueError(f"table {target.table!r} is already missing")

    def undo() -> None:
        db.tables.setdefault(target.table, table)

    return ActiveFault("table-missing", target.subdomain, undo)


def database_missing(world: Stage, target: Target) -> ActiveFault:
    database = world.cluster.databases.pop(target.database, None)
    if database is None:
        raise ValueError(f"database {target.database!r} is already missing")

    def undo() -> None:
        world.cluster.databases.setdefault(target.database, database)

    return ActiveFault("database-missing", target.subdomain, undo)


def ingestor_only(world: Stage, target: Target) -> ActiveFault:
    """The forum's least privilege: the writer holds Ingestor, not the Admin IoT Central needs."""
    identity = _app_identity(world, target)
    db = world.cluster.database(target.database)
    db_rows, _ = _app_assignments(world, target, identity)
    if not db_rows:
        raise ValueError(f"app {target.subdomain!r} holds no database role to demote")
    db.principals[:] = [a for a in db.principals if a not in db_rows]
    fqn = db_rows[0].fqn
    world.cluster.grant(target.database, "ingestors", str(fqn), db_rows[0].notes)

    def undo() -> None:
        db.principals[:] = [a for a in db.principals if not (a.held_by(identity) and a.role == "ingestors")]
        db.principals.extend(db_rows)

    return ActiveFault("ingestor-only", target.subdomain, undo)


def destination_stale(world: Stage, target: Target) -> ActiveFault:
    """Permissions set after the destination was created: the destination stays denied until
    it is removed and added again (IoT Central's troubleshooting page)."""
    identity = _app_identity(world, target)
    db_rows, _ = _app_assignments(world, target, identity)
    if not db_rows:
        raise ValueError(f"app {target.subdomain!r} holds no role to have been granted late")
    dest = world.iotc.apps[target.subdomain].destinations[target.destination_id]
    previous = [a.added_at for a in db_rows]
    later = max(datetime.now(UTC), dest["_created"]) + timedelta(milliseconds=1)
    for a in db_rows:
        a.added_at = later
    dest["_binds_grant"] = True

    def undo() -> None:
        dest.pop("_binds_grant", None)
        for a, at in zip(db_rows, previous, strict=True):
            a.added_at = at

    return ActiveFault("destination-stale", target.subdomain, undo)


def access_denied_code(world: Stage, target: Target) -> ActiveFault:
    """A stale permission whose only signal is ADX's `BadRequest_TableAccessDenied` code."""
    stale = stale_permission(world, target)
    key = f"{target.database}/{target.table}"
    world.cluster.denial_codes[key] = "BadRequest_TableAccessDenied"
    world.delivery.iotc_error_styles[target.subdomain] = "code-only"

    def undo() -> None:
        stale.undo()
        world.cluster.denial_codes.pop(key, None)
        world.delivery.iotc_error_styles.pop(target.subdomain, None)

    return ActiveFault("access-denied-code", target.subdomain, undo)


def _table_setting(world: Stage, target: Target, kind: str, name: str, value: Any) -> ActiveFault:
    """The principal is removed from a table with a query-side policy set: the repair must be
    verified without counting rows."""
    table = world.cluster.table(target.database, target.table)
    before = getattr(table, name)
    setattr(table, name, value)
    removed = principal_removed(world, target)

    def undo() -> None:
        setattr(table, name, before)
        removed.undo()

    return ActiveFault(kind, target.subdomain, undo)


def restricted_view(world: Stage, target: Target) -> ActiveFault:
    return _table_setting(world, target, "restricted-view", "restricted_view_access", True)


def row_level_security(world: Stage, target: Target) -> ActiveFault:
    policy = {"IsEnabled": True, "Query": "SandboxRls", "ChildEntities": None}
    return _table_setting(world, target, "row-level-security", "row_level_security", policy)


def ingestion_time_disabled(world: Stage, target: Target) -> ActiveFault:
    return _table_setting(world, target, "ingestion-time-disabled", "ingestion_time_policy", False)


def simulated_devices(world: Stage, target: Target) -> ActiveFault:
    """Only simulated devices: IoT Central does not export them with a managed identity."""
    app = world.iotc.apps[target.subdomain]
    before = {d["id"]: d["simulated"] for d in app.devices.values()}
    for device in app.devices.values():
        device["simulated"] = True
    removed = principal_removed(world, target)

    def undo() -> None:
        for device_id, simulated in before.items():
            app.devices[device_id]["simulated"] = simulated
        removed.undo()

    return ActiveFault("simulated-devices", target.subdomain, undo)


def unknown_identity(world: Stage, target: Target) -> ActiveFault:
    """IoT Central's identity was re-created and Entra does not know the new one yet: ARM
    names it, ADX refuses to add it, and the exporter's token is refused."""
    app = world.iotc.apps[target.subdomain]
    app.arm_principal_override = str(uuid.uuid4())

    def undo() -> None:
        app.arm_principal_override = None

    return ActiveFault("unknown-identity", target.subdomain, undo, {"object_id": app.arm_principal_override})


def gateway_html(world: Stage, target: Target) -> ActiveFault:
    """Something between the healer and the app's API answers HTTP 200 with an HTML page."""
    world.iotc.gateway_html.add(target.subdomain)

    def undo() -> None:
        world.iotc.gateway_html.discard(target.subdomain)

    return ActiveFault("gateway-html", target.subdomain, undo)


SCENARIO_FAULTS: dict[str, Callable[[Stage, Target], ActiveFault]] = {
    "stale-permission": stale_permission,
    "principal-removed": principal_removed,
    "identity-rotated": identity_rotated,
    "table-level-only": table_level_only,
    "healer-not-admin": healer_not_admin,
    "table-missing": table_missing,
    "database-missing": database_missing,
    "ingestor-only": ingestor_only,
    "destination-stale": destination_stale,
    "access-denied-code": access_denied_code,
    "restricted-view": restricted_view,
    "row-level-security": row_level_security,
    "ingestion-time-disabled": ingestion_time_disabled,
    "simulated-devices": simulated_devices,
    "unknown-identity": unknown_identity,
    "gateway-html": gateway_html,
}


def inject(stage: Stage, kind: str, subdomain: str) -> ActiveFault:
    """Break one app's export the way operators see it break. Returns the fault (with undo)."""
    if kind not in SCENARIO_FAULTS:
        raise ValueError(f"kind must be one of {', '.join(SCENARIO_FAULTS)}, not {kind!r}")
    if subdomain not in stage.iotc.apps:
        raise ValueError(f"app must be one of {', '.join(stage.iotc.apps)}, not {subdomain!r}")
    target = stage.target(subdomain)
    with stage.cluster.lock, stage.lock:
        fault = SCENARIO_FAULTS[kind](stage, target)
        stage.active[(kind, subdomain)] = fault
        return fault


def clear(stage: Stage, kind: str, subdomain: str) -> None:
    """Undo a fault by hand (as an operator would); a healed fault is simply forgotten."""
    with stage.cluster.lock, stage.lock:
        fault = stage.active.pop((kind, subdomain), None)
        if fault is not None:
            fault.undo()
