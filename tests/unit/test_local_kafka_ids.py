"""The local broker's KRaft cluster ids: the storage tool reads an id starting with '-' as an option."""

from __future__ import annotations

import base64

from integrations.kafka.local import cluster_id


def test_cluster_ids_never_start_with_a_dash_and_decode_to_16_bytes():
    ids = [cluster_id() for _ in range(5000)]  # ~78 of 5000 plain draws would start with '-'
    assert not [i for i in ids if i.startswith("-")]
    assert {len(base64.urlsafe_b64decode(i + "==")) for i in ids} == {16}
    assert len(set(ids)) == 5000
