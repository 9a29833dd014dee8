"""Verification (shared/runs/verification.py) as a unit: a repair counts only when the principal is
listed, new rows arrive after it and IoT Central reports the destination healthy; where rows
cannot be counted, only the destination's status with its last export time past the repair. And
the run's verification deadline: polled until it, then not healed and retried."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.adapters.iotcentral_model import IotcError
from shared.adapters.kusto_errors import AdxError
from shared.domain.messages import new_run, parse_message
from shared.runs.fencing import Run
from shared.runs.phases import ADDING, PLANNED, VERIFYING
from shared.runs.verification import Verification, verify
from tests.support.model_fakes import START
from tests.support.model_target import TARGET
from tests.support.run_units import CountingKusto, StatusIotc, adapters, unit_harness

REPAIRED_AT = START
AFTER = (START + timedelta(minutes=2)).isoformat().replace("+00:00", "Z")
BEFORE = (START - timedelta(minutes=2)).isoformat().replace("+00:00", "Z")
DENIED = (("Forbidden", "Principal 'aadapp=…' is not authorized to write database 'devicedata'"),)


def check(kusto: CountingKusto, iotc: StatusIotc, listed: bool = True) -> Verification:
    return verify(TARGET, *adapters(kusto, iotc), REPAIRED_AT, listed)


def test_new_rows_a_healthy_destination_and_the_principal_listed_is_healed() -> None:
    kusto = CountingKusto(rows=12)
    result = check(kusto, StatusIotc())
    assert result.healed and not result.still_denied
    assert result.detail == "12 new rows; destination healthy; principal listed"
    assert kusto.asked_since == [REPAIRED_AT]  # rows counted only since the repair


@pytest.mark.parametrize(
    ("kusto", "iotc", "listed", "why"),
    [
        (CountingKusto(rows=12), StatusIotc(), False, "the principal is not listed with its role"),
        (CountingKusto(rows=12), StatusIotc("error", errors=DENIED), True, "destination adx-1 error"),
        (CountingKusto(rows=12), StatusIotc(enabled=False), True, "destination adx-1 healthy"),
        (CountingKusto(rows=0), StatusIotc(), True, "no rows ingested into DeviceTelemetry since"),
    ],
    ids=["not-listed", "destination-failing", "export-disabled", "no-rows"],
)
def test_any_one_missing_piece_is_not_healed(kusto: CountingKusto, iotc: StatusIotc, listed: bool, why: str) -> None:
    result = check(kusto, iotc, listed)
    assert not result.healed
    assert why in result.detail


def test_a_destination_still_reporting_a_permission_failure_is_still_denied() -> None:
    assert check(CountingKusto(rows=0), StatusIotc(destination_status="error", errors=DENIED)).still_denied
    other = (("BadRequest", "the table's schema does not match the export's columns"),)
    assert not check(CountingKusto(rows=0), StatusIotc(destination_status="error", errors=other)).still_denied


@pytest.mark.parametrize(
    ("kusto", "iotc", "reason"),
    [
        (CountingKusto(policies={"ingestiontime", "restricted_view_access"}), StatusIotc(), "restricted view access"),
        (CountingKusto(policies={"ingestiontime", "row_level_security"}), StatusIotc(), "row-level security"),
        (CountingKusto(policies=set()), StatusIotc(), "IngestionTime policy is disabled"),
        (
            CountingKusto(),
            StatusIotc(devices_list=[{"id": "s1", "simulated": True}, {"id": "s2", "simulated": True}]),
            "only simulated devices send",
        ),
    ],
    ids=["restricted-view", "row-level-security", "no-ingestion-time", "simulated-only"],
)
def test_rows_that_cannot_be_counted_are_verified_by_the_export_advancing_past_the_repair(
    kusto: CountingKusto, iotc: StatusIotc, reason: str
) -> None:
    iotc.last_export = AFTER
    result = check(kusto, iotc)
    assert result.healed and result.export_advanced and result.new_rows == 0
    assert reason in result.by_status
    assert result.detail.startswith("verified by IoT Central's destination status and lastExportTime")
    iotc.last_export = BEFORE
    stalled = check(kusto, iotc)
    assert not stalled.healed and not stalled.export_advanced
    assert "last export time has not advanced" in stalled.detail


def test_an_export_time_equal_to_the_repair_has_not_advanced_past_it() -> None:
    iotc = StatusIotc(last_export=REPAIRED_AT.isoformat())
    result = check(CountingKusto(policies=set()), iotc)
    assert result.by_status and not result.export_advanced and not result.healed


def test_simulated_devices_of_a_service_principal_destination_are_counted() -> None:
    """Only a managed identity's export leaves simulated devices out: for a service principal an
    empty count is an empty count."""
    simulated = [{"id": "s1", "simulated": True}]
    iotc = StatusIotc(authorization="servicePrincipal", devices_list=simulated, last_export=AFTER)
    result = check(CountingKusto(), iotc)
    assert not result.healed and result.by_status == ""
    assert "no rows ingested" in result.detail


def test_an_unhealthy_destination_is_not_healed_however_rows_are_counted() -> None:
    iotc = StatusIotc(destination_status="error", errors=DENIED, last_export=AFTER)
    result = check(CountingKusto(policies={"restricted_view_access"}), iotc)
    assert not result.healed and result.by_status == ""


def test_a_count_that_times_out_is_a_failure_unless_rows_cannot_be_counted_anyway() -> None:
    timeout = AdxError("RequestTimeout", "the query did not finish in 00:01:00", transient=True, status=504)
    result = check(CountingKusto(fail_count=timeout), StatusIotc(last_export=AFTER))
    assert not result.healed
    assert "verification query failed: RequestTimeout" in result.detail
    restricted = CountingKusto(fail_count=timeout, policies={"ingestiontime", "restricted_view_access"})
    assert check(restricted, StatusIotc(last_export=AFTER)).healed


def test_policies_that_cannot_be_read_are_not_reasons() -> None:
    result = check(CountingKusto(fail_policies=True), StatusIotc(last_export=AFTER))
    assert not result.healed and result.by_status == ""


def test_iot_central_unreachable_is_not_healed() -> None:
    iotc = StatusIotc(fail=IotcError(None, "Timeout", "read timed out after 30 s"))
    result = check(CountingKusto(rows=5), iotc)
    assert not result.healed and not result.export_healthy and not result.still_denied
    assert "IoT Central status unavailable" in result.detail


def test_healed_needs_the_listing_and_health_whatever_else_holds() -> None:
    assert not Verification(False, 5, True, "").healed
    assert not Verification(True, 5, False, "").healed
    assert not Verification(True, 0, True, "", by_status="", export_advanced=True).healed
    assert Verification(True, 0, True, "", by_status="restricted view access is on", export_advanced=True).healed


# ---------------------------------------------------------------- the run's verification deadline


def test_verification_polls_until_its_deadline_then_ends_not_healed_and_retries() -> None:
    h = unit_harness(held=False)  # nothing was added: IoT Central keeps reporting the denial
    msg = new_run(TARGET.key, "timer")
    run = Run(h.services, TARGET.key, msg.run_id)
    assert run.acquire() is not None
    run.transition({"<another run>", ""}, PLANNED)
    run.transition({PLANNED}, ADDING)
    run.journal("add", "done", listed=True)
    run.transition({ADDING}, VERIFYING)
    settings = h.services.settings
    until = h.clock() + timedelta(seconds=settings.verify_deadline_seconds)
    verify_msg = msg.next("verify", action_at=h.clock(), verify_until=until).to_json()

    assert h.deliver(verify_msg) == "waiting"  # before the deadline: polled again
    [again] = h.queue.messages.values()
    assert again.body == verify_msg
    assert again.visible_at == h.clock() + timedelta(seconds=settings.verify_poll_seconds)
    state = h.store.load(TARGET.key)
    assert state.phase == VERIFYING and state.lease_owner == msg.run_id

    h.queue.messages.clear()
    h.clock.now = until
    assert h.deliver(verify_msg) == "not-healed"
    state = h.store.load(TARGET.key)
    assert state.phase == "done" and state.lease_owner == "" and state.attempts == [until]
    [retry] = h.queue.messages.values()
    next_run = parse_message(retry.body)
    assert (next_run.step, next_run.trigger, next_run.correlation_id) == ("start", "retry", msg.correlation_id)
    assert next_run.run_id != msg.run_id
    assert h.store.history_rows[-1]["Detail"].endswith("retry scheduled")
