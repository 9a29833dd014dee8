"""azure-identity against the token endpoint; QueueClient and TableClient against Azurite."""

from __future__ import annotations

import os
import uuid

import jwt
import pytest
from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError
from azure.data.tables import TableClient, UpdateMode
from azure.identity import CredentialUnavailableError, ManagedIdentityCredential
from azure.storage.queue import QueueClient

from sandbox.azurite import Azurite
from sandbox.entra import new_identity
from sandbox.world import World

pytestmark = pytest.mark.integration


def test_managed_identity_credential_gets_a_token_for_the_healer(world: World) -> None:
    token = ManagedIdentityCredential().get_token("https://kusto.kusto.windows.net/.default")
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert claims["oid"] == world.healer.object_id and claims["aud"] == "https://kusto.kusto.windows.net"
    assert token.expires_on > 0


def test_user_assigned_identity_is_selected_by_client_id(world: World) -> None:
    other = world.directory.add(new_identity("other"))
    token = ManagedIdentityCredential(client_id=other.client_id).get_token("https://api.loganalytics.io/.default")
    assert jwt.decode(token.token, options={"verify_signature": False})["appid"] == other.client_id


def test_wrong_identity_header_is_refused(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "wrong")
    with pytest.raises(CredentialUnavailableError) as info:
        ManagedIdentityCredential().get_token("https://kusto.kusto.windows.net/.default")
    assert "X-IDENTITY-HEADER is missing or wrong" in str(info.value)
    assert os.environ["IDENTITY_ENDPOINT"].startswith("http://127.0.0.1:")


def test_queue_send_receive_with_visibility_delay(azurite: Azurite) -> None:
    queue = QueueClient.from_connection_string(azurite.connection_string, f"q{uuid.uuid4().hex[:12]}")
    queue.create_queue()
    queue.send_message("now")
    queue.send_message("later", visibility_timeout=60)
    received = list(queue.receive_messages(max_messages=32, visibility_timeout=30))
    assert [m.content for m in received] == ["now"]
    assert received[0].dequeue_count == 1
    queue.delete_message(received[0])
    assert queue.get_queue_properties().approximate_message_count == 1
    queue.delete_queue()


def test_table_etag_guards_concurrent_updates(azurite: Azurite) -> None:
    table = TableClient.from_connection_string(azurite.connection_string, f"t{uuid.uuid4().hex[:12]}")
    table.create_table()
    table.create_entity({"PartitionKey": "target", "RowKey": "lease", "Owner": "a"})
    first = table.get_entity("target", "lease")
    table.update_entity(
        {"PartitionKey": "target", "RowKey": "lease", "Owner": "b"},
        mode=UpdateMode.REPLACE,
        etag=first.metadata["etag"],
        match_condition=MatchConditions.IfNotModified,
    )
    with pytest.raises(ResourceModifiedError):
        table.update_entity(
            {"PartitionKey": "target", "RowKey": "lease", "Owner": "c"},
            mode=UpdateMode.REPLACE,
            etag=first.metadata["etag"],
            match_condition=MatchConditions.IfNotModified,
        )
    assert table.get_entity("target", "lease")["Owner"] == "b"
    table.delete_table()


def test_tables_come_with_the_first_write_and_old_rows_are_pruned_once_a_day(azurite: Azurite) -> None:
    from datetime import UTC, datetime, timedelta

    from shared.adapters.storage import StateStore, record_alert

    store = StateStore(azurite.connection_string, prefix=f"r{uuid.uuid4().hex[:8]}")
    now = datetime.now(UTC)
    assert store.all_states() == [] and store.read_journal("a:b:c") == []  # no tables yet: empty, not an error
    store.write_journal("a:b:c", "run1", "add", "intent", {}, now)  # the first write creates the table
    store.append_history("a:b:c", "run1", {"Outcome": "healed"}, now)
    record_alert(store, "k1", {"AlertId": "x"}, now)
    assert len(store.read_journal("a:b:c")) == 1
    assert store.prune(now, timedelta(days=90)) == 0  # nothing is 90 days old
    later = now + timedelta(days=91)
    assert store.prune(later, timedelta(days=90), at_most=2) == 2  # a bounded pass; the rest next time
    assert store.prune(later, timedelta(days=90)) == 1
    assert store.read_journal("a:b:c") == [] and store.read_history("a:b:c") == []
    store.write_journal("a:b:c", "run2", "add", "intent", {}, later)
    assert store.prune(later + timedelta(hours=1), timedelta(seconds=0)) == 0  # at most once a day
    assert len(store.read_journal("a:b:c")) == 1
