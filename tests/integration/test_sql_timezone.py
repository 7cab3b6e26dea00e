"""Issue 12 item 5: timestamp columns without a time zone in a database that is not in UTC.

The transaction guard caps the timestamp bound at the start of the oldest open transaction, an
instant; for a ``timestamp`` (wall clock) column that instant must be turned into the database's own
wall time. With the zone left unset the source asks the server; a configured zone that disagrees
with the server is refused at start, never used to skip rows.
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from integrations.errors import ConfigError
from integrations.sources.sql import SqlSource
from tests.integration.test_sql_support import config, read_topic, run

ZONE = "America/New_York"


def _ny_database(pg_url: str) -> sa.Engine:
    """Set the test database's time zone to New York and create the issue's table."""
    db = sa.make_url(pg_url).database
    admin = sa.create_engine(sa.make_url(pg_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f"ALTER DATABASE \"{db}\" SET timezone = '{ZONE}'"))
    admin.dispose()
    eng = sa.create_engine(pg_url)
    with eng.begin() as c:
        assert c.execute(sa.text("SHOW TimeZone")).scalar() == ZONE
        c.execute(sa.text("CREATE TABLE ev (id serial PRIMARY KEY, ts timestamp NOT NULL DEFAULT now(), "
                          "note text NOT NULL)"))
        c.execute(sa.text("INSERT INTO ev (note) VALUES ('first')"))
    return eng


def test_open_transaction_row_arrives_with_default_db_timezone(pg_url: str, kafka, topic_factory,
                                                               unique: str, caplog) -> None:
    """The issue's setup: the row of a transaction open across a run arrives on the next run."""
    eng = _ny_database(pg_url)
    offsets = topic_factory("offs", create=False)
    prefix = f"tz-{unique}-"
    cfg = config(f"tz-{unique}", pg_url, mode="timestamp+incrementing", tables=["ev"],
                 incrementing_column="id", timestamp_column="ts", topic_prefix=prefix)
    assert "db_timezone" not in cfg.model_fields_set  # left at its default, as in the issue
    held = eng.connect()
    try:
        tx = held.begin()
        held.execute(sa.text("INSERT INTO ev (note) VALUES ('open')"))  # ts = start of this transaction
        time.sleep(0.05)
        with eng.begin() as c:  # a newer row, committed while the first transaction stays open
            c.execute(sa.text("INSERT INTO ev (note) VALUES ('later')"))
        with caplog.at_level("WARNING", logger="headrace.source.sql"):
            first = run(cfg, kafka, offsets)
        # the DST fall-back gap of wall-clock columns is named once the zone has daylight saving time
        assert any("has no time zone and America/New_York has daylight saving time" in r.getMessage()
                   for r in caplog.records)
        assert [r["note"] for r in read_topic(kafka, prefix + "ev")] == ["first"], first
        tx.commit()
        run(cfg, kafka, offsets)
        got = read_topic(kafka, prefix + "ev")
        assert [(r["id"], r["note"]) for r in got] == [(1, "first"), (2, "open"), (3, "later")]
        run(cfg, kafka, offsets)  # nothing twice
        assert len(read_topic(kafka, prefix + "ev")) == 3
    finally:
        held.close()
        eng.dispose()
        kafka.delete_topics([prefix + "ev"])


def test_configured_zone_must_match_the_server(pg_url: str) -> None:
    """A db_timezone that disagrees with the server is refused at start; an alias of the same zone,
    or the same zone set for the connector's sessions in the URL, is accepted."""
    _ny_database(pg_url).dispose()
    kw = {"mode": "timestamp", "tables": ["ev"], "timestamp_column": "ts"}
    with pytest.raises(ConfigError, match=r"db_timezone 'UTC'.*'America/New_York'"):
        SqlSource(config("tz-bad", pg_url, db_timezone="UTC", **kw))
    for zone in ("America/New_York", "US/Eastern"):  # US/Eastern is a link to America/New_York
        src = SqlSource(config("tz-ok", pg_url, db_timezone=zone, **kw))
        try:
            assert src.zone.key == zone
        finally:
            src.close()
    default = SqlSource(config("tz-default", pg_url, **kw))
    try:
        assert default.zone.key == ZONE
    finally:
        default.close()
    # the connector's own sessions in UTC (libpq options): the zone then agrees with db_timezone UTC
    utc_url = pg_url + "?options=-c%20TimeZone%3DUTC"
    src = SqlSource(config("tz-utc", utc_url, db_timezone="UTC", **kw))
    try:
        assert src.zone.key == "UTC"
        assert src.reader.scalar(sa.text("SHOW TimeZone")) == "UTC"
    finally:
        src.close()
    # a POSIX zone string is no IANA name: refused, the default cannot guess its rules
    posix_url = pg_url + "?options=-c%20TimeZone%3D%3C%2B03%3E-03"
    with pytest.raises(ConfigError, match=r"TimeZone '<\+03>-03' is not an IANA zone name"):
        SqlSource(config("tz-posix", posix_url, **kw))


def test_other_databases_default_to_utc(tmp_path) -> None:
    """SQLite has no session time zone (CURRENT_TIMESTAMP is UTC): the default stays UTC."""
    url = f"sqlite:///{tmp_path}/t.db"
    eng = sa.create_engine(url)
    with eng.begin() as c:
        c.execute(sa.text("CREATE TABLE ev (id integer PRIMARY KEY, ts datetime NOT NULL)"))
    eng.dispose()
    src = SqlSource(config("tz-lite", url, mode="timestamp", tables=["ev"], timestamp_column="ts"))
    try:
        assert src.zone.key == "UTC"
    finally:
        src.close()
