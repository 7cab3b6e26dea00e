"""Reliability matrix row 16: SASL_SSL works, a bad certificate or password is refused, and the secret never shows.

A throwaway broker whose only client listener is SASL_SSL (PLAIN over TLS 1.2+), with a server
certificate for 127.0.0.1 signed by a CA made for this test. Connectors run through the
``headrace run`` command, configured the way the README says: ``KAFKA_BOOTSTRAP_SERVERS`` and
``HEADRACE_KAFKA_CONFIG`` with the password as ``${env:KAFKA_PW}``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from integrations.kafka.local import LocalKafka
from tests.conftest import free_port, remove_broker, run_cli

PASSWORD = "s3cret-Pw-4f9a1c"  # noqa: S105 - the test's own broker
ADMIN_PASSWORD = "admin-Pw-77e2b0"  # noqa: S105


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(folder: Path, cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA, written to ``<folder>/<cn>.pem``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (folder / f"{cn}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _server_pem(folder: Path, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate) -> Path:
    """Key and certificate for 127.0.0.1 signed by ``ca``, in one PEM file (Kafka's PEM keystore)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    path = folder / "server.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
                     + cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def secure_broker(kafka, tmp_path_factory) -> Iterator[tuple[LocalKafka, Path]]:
    """A SASL_SSL-only broker (the shared one provides the jars); returns it and the folder of its CAs."""
    folder = tmp_path_factory.mktemp("tls")
    ca_key, ca = _ca(folder, "good-ca")
    _ca(folder, "other-ca")
    keystore = _server_pem(folder, ca_key, ca)
    jaas = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="admin" password="{ADMIN_PASSWORD}" user_admin="{ADMIN_PASSWORD}" user_app="{PASSWORD}";')
    broker = LocalKafka(
        port=free_port(), controller_port=free_port(), heap="384m", protocol="SASL_SSL",
        extra_properties=(
            "sasl.enabled.mechanisms=PLAIN", "sasl.mechanism.inter.broker.protocol=PLAIN",
            f"listener.name.sasl_ssl.plain.sasl.jaas.config={jaas}",
            "ssl.keystore.type=PEM", f"ssl.keystore.location={keystore}",
            "ssl.truststore.type=PEM", f"ssl.truststore.location={folder / 'good-ca.pem'}",
        ),
        client_config=(("security.protocol", "SASL_SSL"), ("sasl.mechanisms", "PLAIN"), ("sasl.username", "admin"),
                       ("sasl.password", ADMIN_PASSWORD), ("ssl.ca.location", str(folder / "good-ca.pem"))),
    )
    broker.up(wait=120)
    try:
        yield broker, folder
    finally:
        remove_broker(broker)  # its properties hold the JAAS passwords


def _env(broker: LocalKafka, ca: Path, password: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "HEADRACE_KAFKA_CONFIG": ("security.protocol=SASL_SSL;sasl.mechanism=PLAIN;sasl.username=app;"
                                  f"sasl.password=${{env:KAFKA_PW}};ssl.ca.location={ca}"),
        "KAFKA_PW": password,
        "HEADRACE_KAFKA_CONNECT_RETRIES": "2",
    }


def _connectors(tmp_path: Path, unique: str, rows: int) -> tuple[Path, Path, str]:
    """A SQLite table of ``rows`` ids, a source writing it to a topic and a Parquet sink reading it back."""
    db = tmp_path / "src.db"
    eng = sa.create_engine(f"sqlite:///{db}")
    with eng.begin() as c:
        c.execute(sa.text("CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)"))
        c.execute(sa.text(f"WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < {rows}) "
                          "INSERT INTO items SELECT i, 'v' || i FROM g"))
    eng.dispose()
    topic = f"sec-{unique}-items"
    source = tmp_path / "source.yaml"
    source.write_text(yaml.safe_dump({"name": f"sec-src-{unique}", "type": "sql_source",
                                      "connection_url": f"sqlite:///{db}", "mode": "incrementing",
                                      "incrementing_column": "id", "tables": ["items"],
                                      "topic_prefix": f"sec-{unique}-"}))
    sink = tmp_path / "sink.yaml"
    sink.write_text(yaml.safe_dump({"name": f"sec-sink-{unique}", "type": "parquet_sink", "topics": [topic],
                                    "path": str(tmp_path / "out"), "flush_size": 1000}))
    return source, sink, topic


def _no_secret(proc) -> None:
    for text in (proc.stdout, proc.stderr):
        assert PASSWORD not in text and ADMIN_PASSWORD not in text


def test_sasl_ssl_moves_every_row_and_never_shows_the_password(secure_broker, tmp_path, unique):
    broker, certs = secure_broker
    source, sink, topic = _connectors(tmp_path, unique, 2500)
    env = _env(broker, certs / "good-ca.pem", PASSWORD)
    first = run_cli("run", str(source), env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    drained = run_cli("run", str(sink), env=env)
    assert drained.returncode == 0, drained.stderr[-3000:]
    files = sorted((tmp_path / "out" / topic).rglob("*.parquet"))
    assert [f.name for f in files] == [f"{topic}+0+{s:020d}.parquet" for s in (0, 1000, 2000)]
    assert sorted(i for f in files for i in pq.read_table(f).column("id").to_pylist()) == list(range(1, 2501))
    for proc in (first, drained):
        _no_secret(proc)


@pytest.mark.parametrize("case", ["bad certificate", "bad password"])
def test_a_bad_certificate_or_password_is_refused_with_a_clear_error(secure_broker, tmp_path, unique, case):
    broker, certs = secure_broker
    source, _sink, topic = _connectors(tmp_path, unique, 10)
    ca, pw = (certs / "other-ca.pem", PASSWORD) if case == "bad certificate" else (certs / "good-ca.pem", "wrong-pw")
    proc = run_cli("run", str(source), env=_env(broker, ca, pw), timeout=180)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    refused = f"error: Kafka at {broker.bootstrap} refused the connection: "
    if case == "bad certificate":
        assert refused + "the TLS handshake failed" in out and "certificate verify failed" in out
        assert "check ssl.ca.location" in out
    else:
        assert refused + "authentication failed" in out and "Invalid username or password" in out
        assert "check sasl.mechanism, sasl.username and sasl.password" in out
    _no_secret(proc)
    assert "wrong-pw" not in out
    # nothing was written: the topic does not exist on the broker
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": broker.bootstrap, **dict(broker.client_config)})
    assert topic not in admin.list_topics(timeout=10).topics
