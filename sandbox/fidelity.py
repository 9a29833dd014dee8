"""The fidelity ledger: every behaviour the sandbox models, with its source, or "unverified —
both ways tested" and the tests that drive each way.

A test (tests/unit/test_fidelity_ledger.py) fails when a fault kind or a switch exists without an
entry here, and when an unverified entry names a test that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

UNVERIFIED = "unverified — both ways tested"

ADX_ROLES = "https://learn.microsoft.com/azure/data-explorer/kusto/access-control/role-based-access-control"
ADX_PRINCIPALS = "https://learn.microsoft.com/azure/data-explorer/kusto/management/manage-database-security-roles"
ADX_SHOW_COLUMNS = "microsoft/Kusto-Query-Language, EngineCommandInfos.cs (result schema of .show … principals)"
ADX_ERRORS = "https://learn.microsoft.com/azure/data-explorer/error-codes"
ADX_RVA = "https://learn.microsoft.com/azure/data-explorer/kusto/management/restricted-view-access-policy"
ADX_RLS = "https://learn.microsoft.com/azure/data-explorer/kusto/management/row-level-security-policy"
ADX_INGESTION_TIME = "https://learn.microsoft.com/azure/data-explorer/kusto/management/ingestiontime-policy"
ADX_STREAMING = "https://learn.microsoft.com/azure/data-explorer/kusto/management/streaming-ingestion-policy"
ADX_TABLE_DETAILS = "https://learn.microsoft.com/azure/data-explorer/kusto/management/show-table-details-command"
ADX_FAILED_INGESTION = "MicrosoftDocs/dataexplorer-docs, data-explorer/ingest-data-no-code.md (FailedIngestion)"
IOTC_TROUBLESHOOT = "https://learn.microsoft.com/azure/iot-central/core/troubleshooting"
IOTC_ADX = "https://learn.microsoft.com/azure/iot-central/core/howto-export-to-azure-data-explorer"
IOTC_SPEC = "Azure/azure-rest-api-specs, specification/iotcentral/data-plane/IoTCentral/preview/2022-10-31-preview"
IOTC_EXPORT_CREATE = IOTC_SPEC + "/examples/dataexports_exports_create.json (filter, enrichments, transform)"
IOTC_DEVICE_IMPLEMENTATION = "https://learn.microsoft.com/azure/iot-central/core/concepts-device-implementation"
IOTC_QUOTAS = "https://learn.microsoft.com/azure/iot-central/core/concepts-quotas-limits"
KUSTO_404_SAMPLE = "Azure/azure-kusto-samples-dotnet#29 (404-NotFound, EntityNameDoesNotExistException)"
ARM_UNKNOWN_ID = "Azure/azure-sdk-for-net#16416 (\"Entity ID … of type 'AAD Application Id' was not found\")"


@dataclass(frozen=True)
class Entry:
    behaviour: str
    source: str  # a doc page or repository path, or UNVERIFIED
    tests: tuple[str, ...] = ()  # for UNVERIFIED: the tests that drive each way

    @property
    def verified(self) -> bool:
        return self.source != UNVERIFIED


# Scenario faults (sandbox.scenarios.SCENARIO_FAULTS) and the transport fault.
FAULTS: dict[str, Entry] = {
    "stale-permission": Entry(
        "the principal is listed with its role, ingestion is denied until it is dropped and re-added "
        "(the forum thread's 'stale permission cache'; no Microsoft source documents such a cache)",
        UNVERIFIED,
        ("test_refresh_heals_stale_permission", "test_stale_permission_survives_a_re_add_without_drop"),
    ),
    "principal-removed": Entry("the app's principal holds no role on the database", ADX_PRINCIPALS),
    "identity-rotated": Entry(
        "a system-assigned identity switched off and on gets a new object id; ADX still lists the old one",
        "https://learn.microsoft.com/entra/identity/managed-identities-azure-resources/overview",
    ),
    "table-level-only": Entry(
        "only a table role remains; a table role needs a database role to ingest", ADX_PRINCIPALS
    ),
    "healer-not-admin": Entry("the healer is Viewer: role commands need Database Admin", ADX_PRINCIPALS),
    "table-missing": Entry("the table is gone: ingestion fails with BadRequest_EntityNotFound", ADX_ERRORS),
    "database-missing": Entry(
        "the database is gone: every command and query on it answers HTTP 404, code NotFound, "
        "Kusto.Common.Svc.Exceptions.EntityNameDoesNotExistException, \"Entity name 'D' of kind 'Database' does "
        'not exist." (the body a real cluster answered; azure-kusto-data keeps only the response)',
        KUSTO_404_SAMPLE,
    ),
    "ingestor-only": Entry(
        "the writer holds database Ingestor only; IoT Central's docs require database Admin for its identity, "
        "so the exporter is refused (which operation needs Admin is not documented: the sandbox refuses "
        "the mapping operation; the exporter_role switch lets Ingestor suffice)",
        IOTC_ADX,
    ),
    "destination-stale": Entry(
        "a destination created before the grant stays denied until it is removed and added again "
        "(the documented remedy; the mechanism behind it is unverified)",
        UNVERIFIED,
        ("test_destination_stale_is_healed_by_re_creating_it", "test_a_fresh_destination_is_not_bound_to_old_grants"),
    ),
    "access-denied-code": Entry(
        "a denial whose only signal is ADX's BadRequest_TableAccessDenied code ('Access to table is denied')",
        ADX_ERRORS,
    ),
    "restricted-view": Entry(
        "restricted view access: even a Database Admin cannot query the table without UnrestrictedViewer",
        ADX_RVA,
    ),
    "row-level-security": Entry(
        "row-level security filters query results (the sandbox's predicate lets the healer see no row)", ADX_RLS
    ),
    "ingestion-time-disabled": Entry(
        "with the IngestionTime policy disabled, ingestion_time() is null", ADX_INGESTION_TIME
    ),
    "simulated-devices": Entry(
        "IoT Central does not export simulated devices with a managed identity (documented); that the export "
        "still reports healthy and advances lastExportTime meanwhile is unverified",
        UNVERIFIED,
        (
            "test_simulated_devices_send_nothing_with_a_managed_identity",
            "test_verified_by_status_when_rows_cannot_be_counted",
        ),
    ),
    "unknown-identity": Entry(
        "ARM names an identity Entra does not know yet: `.add` of it is refused (wording after ARM's; Kusto's "
        "own code and text are unverified) and the exporter's token is refused with "
        "BadRequest_InvalidKustoIdentityToken",
        ARM_UNKNOWN_ID,
    ),
    "transport": Entry(
        "throttling (429 + Retry-After), 5xx, dropped connections, latency; IoT Central's throttling status "
        "is unverified and handled as 429",
        "https://learn.microsoft.com/azure/data-explorer/kusto/api/rest/response",
    ),
    "gateway-html": Entry(
        "not IoT Central's behaviour but of something in front of it (a gateway, a proxy's sign-in page): "
        "HTTP 200 with a text/html page instead of JSON; a client must check the media type it was sent "
        "(RFC 9110 §8.3, Content-Type) before reading the body as JSON",
        "https://www.rfc-editor.org/rfc/rfc9110#section-8.3",
    ),
}

# Switches (switch attributes on the world and its delivery): behaviour no primary source settles, or that varies.
SWITCHES: dict[str, Entry] = {
    "list_normalised": Entry(
        "listings name an application by its application id and the tenant GUID whatever was typed "
        "(on), or echo the FQN as added (off)",
        UNVERIFIED,
        ("test_listing_is_normalised_or_echoed", "test_principal_matched_by_either_id_in_both_listing_styles"),
    ),
    "cluster_row_text": Entry(
        "cluster-level rows in listings read as the role name (AllDatabasesAdmin) or as 'Cluster …' text",
        UNVERIFIED,
        ("test_unknown_role_rows_are_skipped_with_a_note",),
    ),
    "own_role_text": Entry(
        "the Role text of `.show database D principal roles` (undocumented): Admin, Admins, Database D Admin",
        UNVERIFIED,
        ("test_own_role_text_is_parsed_in_every_style",),
    ),
    "exporter_role": Entry(
        "the database role IoT Central's exporter needs: Admin (its docs) or Ingestor (the forum)",
        UNVERIFIED,
        (
            "test_ingestor_only_is_insufficient_when_admin_is_required",
            "test_ingestor_suffices_when_the_exporter_allows_it",
        ),
    ),
    "iotc_error_style": Entry(
        "IoT Central's errors[] for ADX failures (undocumented; the only published sample is InvalidResponse): "
        "its own words, Kusto's code with a bare message, or a copy of Kusto's code and message",
        UNVERIFIED,
        ("test_permission_classified_in_every_iotc_error_style",),
    ),
    "refuse_delete_in_use": Entry(
        "DELETE of a destination an export still references is refused (409, the stricter answer) or allowed; "
        "the healer re-points the export before it deletes, so it works either way",
        UNVERIFIED,
        ("test_destination_in_use_cannot_be_deleted", "test_recreate_destination_steps_make_before_break"),
    ),
    "ts_reading": Entry(
        "what the query API's $ts answers for a message that carries iothub-creation-time-utc: the enqueued time "
        "(enqueued) or the device's creation time (creation); the device implementation page says IoT Central "
        "displays the latter, nothing says what $ts is",
        UNVERIFIED,
        (
            "test_creation_times_under_both_ts_readings",
            "test_enrichments_message_properties_and_components_are_backfilled_exactly",
        ),
    ),
    "component_keys": Entry(
        "how an answer names a component's capability asked for without an alias: component.name (path) or "
        "name (name); the healer asks with AS aliases",
        UNVERIFIED,
        (
            "test_component_telemetry_is_asked_for_under_aliases",
            "test_enrichments_message_properties_and_components_are_backfilled_exactly",
        ),
    ),
}

# Behaviours that are always on (no switch), for the record.
BEHAVIOURS: dict[str, Entry] = {
    "principal-columns": Entry(
        "Role, PrincipalType, PrincipalDisplayName, PrincipalObjectId, PrincipalFQN, Notes, RoleAssignmentIdentifier",
        ADX_SHOW_COLUMNS,
    ),
    "table-listing-inherits": Entry(
        "`.show table T principals` lists the table's rows and the inherited database and cluster rows",
        ADX_SHOW_COLUMNS,
    ),
    "unknown-identity-refused": Entry("`.add` of an application id Entra does not know fails", ARM_UNKNOWN_ID),
    "role-commands": Entry("database role commands need Database Admin; cluster roles only through ARM", ADX_ROLES),
    "destination-api": Entry(
        "PUT/DELETE destinations (create answers status 'waiting'; DELETE 204), PATCH export destinations; "
        "a service principal's clientSecret comes back as *****",
        IOTC_SPEC,
    ),
    "denial-codes": Entry(
        "denied ingestion carries Forbidden, BadRequest_DatabaseAccessDenied (database roles that cannot ingest), "
        "BadRequest_TableAccessDenied (access-denied-code) or BadRequest_InvalidKustoIdentityToken (unknown identity)",
        ADX_ERRORS,
    ),
    "destination-limit": Entry(
        "at most 10 destinations per app (IoT Central's stated data-export limit): a PUT of an 11th is refused; "
        "the refusal's status and code are not documented (the sandbox answers 400 DestinationLimitExceeded)",
        UNVERIFIED,
        (
            "test_recreate_refused_by_the_destination_limit_escalates",
            "test_destination_stale_is_healed_by_re_creating_it",
        ),
    ),
    "failed-ingestion-log": Entry("queued ingestion failures are FailedIngestion rows", ADX_FAILED_INGESTION),
    "streaming-ingestion-policy": Entry(
        "`.show table|database … policy streamingingestion`; streaming into a table is allowed when the "
        "table's own policy or its database's is enabled",
        ADX_STREAMING,
    ),
    "streaming-json-mapping": Entry(
        "streaming JSON needs a pre-created Json mapping (mappingName), applied by its column paths; without one "
        "the stream is refused (the code, BadRequest_MappingReferenceIsRequired here, is unverified)",
        "https://learn.microsoft.com/azure/data-explorer/ingest-data-streaming",
    ),
    "table-details": Entry(
        "`.show table T details`: the documented columns, the effective streaming-ingestion policy (the "
        "table's, else its database's); extents and other policies are not modelled (0, null); column "
        "order as the reference page lists it (the product reads by name)",
        ADX_TABLE_DETAILS,
    ),
    "documented-repair": Entry("remove the destination and add it again", IOTC_TROUBLESHOOT),
    "arm-authorization": Entry(
        "ARM answers a read by a caller without a role on the app 403 AuthorizationFailed, naming the caller, "
        "the action and the scope (the wording as ARM's answers quote it)",
        "Azure/azure-rest-api-specs-examples#4471 and Azure/ARO-RP#66 (ARM's AuthorizationFailed body)",
    ),
    "export-enrichments": Entry(
        'an export\'s enrichments (`{name: {value}}` static, `{path: "$templateDisplayName"}` and the other '
        "system properties, `{target, path}` a device property) are added to every exported message under "
        "`enrichments`; system names other than $templateDisplayName follow the query language's (unverified)",
        IOTC_EXPORT_CREATE,
    ),
    "message-properties": Entry(
        "properties a device sets on a message (iothub-creation-time-utc, whole UTC time with Z) are exported "
        "under messageProperties; the query API does not return them",
        IOTC_DEVICE_IMPLEMENTATION,
    ),
    "simulated-not-exported": Entry(
        "with a managed identity IoT Central does not export simulated devices (before any transform)", IOTC_ADX
    ),
    "telemetry-retention": Entry(
        "telemetry older than 7 days is not available to queries (the current quotas page; older revisions said 30)",
        IOTC_QUOTAS,
    ),
    "property-filter": Entry(
        "an export filter condition on a name that is not telemetry reads the device's property of that name "
        "(filters on device properties are documented; their exact syntax is not, and the healer refuses any "
        "condition that is not telemetry or a system field)",
        IOTC_EXPORT_CREATE,
    ),
    "export-table-columns": Entry(
        "without a transform the table receives the exported message's top-level fields by column name "
        "(applicationId, messageSource, deviceId, schema, templateId, enqueuedTime, telemetry, enrichments, "
        "messageProperties, component, module)",
        IOTC_ADX,
    ),
}


def all_entries() -> dict[str, Entry]:
    return {**FAULTS, **SWITCHES, **BEHAVIOURS}
