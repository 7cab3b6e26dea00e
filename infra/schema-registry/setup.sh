#!/usr/bin/env bash
# A real Schema Registry-compatible server for tests and the demo: Apicurio Registry (in-memory
# storage) from Maven Central, serving Confluent's API at http://127.0.0.1:$PORT/apis/ccompat/v7.
#   bash infra/schema-registry/setup.sh        # fetch (once) and start; idempotent
#   bash infra/schema-registry/setup.sh stop   # stop it
set -euo pipefail
VERSION="${HEADRACE_APICURIO_VERSION:-2.6.13.Final}"
HOME_DIR="${HEADRACE_HOME:-$(cd "$(dirname "$0")/../.." && pwd)/.headrace}/schema-registry"
PORT="${HEADRACE_SCHEMA_REGISTRY_PORT:-18081}"
URL="http://127.0.0.1:${PORT}/apis/ccompat/v7"
DIST="$HOME_DIR/apicurio-registry-app-$VERSION"
JAR="$DIST/apicurio-registry-app-$VERSION-runner.jar"
PIDFILE="$HOME_DIR/registry.pid"

answers() { curl -sf -o /dev/null --max-time 2 "$URL/subjects"; }

if [[ "${1:-start}" == "stop" ]]; then
  if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    kill "$(cat "$PIDFILE")"; rm -f "$PIDFILE"; echo "schema registry stopped"
  else
    echo "schema registry not running"
  fi
  exit 0
fi

if answers; then echo "schema registry already up at $URL"; exit 0; fi
command -v java >/dev/null || { echo "java is required for the schema registry (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
mkdir -p "$DIST"
if [[ ! -f "$JAR" ]]; then
  echo "fetching Apicurio Registry $VERSION from Maven Central (through Maven)..."
  command -v mvn >/dev/null || { echo "Maven (mvn) is required to fetch the schema registry" >&2; exit 1; }
  mvn -q -B dependency:get -Dtransitive=false \
    -Dartifact="io.apicurio:apicurio-registry-app:$VERSION:tar.gz:all" >/dev/null
  REPO_LOCAL="${HEADRACE_MAVEN_REPO:-$HOME/.m2/repository}"  # Maven's default local repository
  tar xzf "$REPO_LOCAL/io/apicurio/apicurio-registry-app/$VERSION/apicurio-registry-app-$VERSION-all.tar.gz" -C "$DIST"
fi
nohup java -Xmx256m -Dquarkus.http.port="$PORT" -Dquarkus.http.host=127.0.0.1 \
  -jar "$JAR" >"$HOME_DIR/registry.log" 2>&1 &
echo $! >"$PIDFILE"
for _ in $(seq 1 90); do
  if answers; then echo "schema registry up at $URL"; exit 0; fi
  if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then break; fi
  sleep 1
done
echo "schema registry did not start; see $HOME_DIR/registry.log" >&2
tail -20 "$HOME_DIR/registry.log" >&2 || true
exit 1
