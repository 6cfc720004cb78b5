#!/usr/bin/env bash
# Set up edgestream on this machine (idempotent, fast when nothing changed), then run a command
# in its environment:
#   bash deploy/local/dev.sh up --duration 180     # the main job on the embedded default
#   bash deploy/local/dev.sh test                  # the test suite (extra args go to pytest)
#   bash deploy/local/dev.sh setup                 # only set up
#   bash deploy/local/dev.sh soak                  # 30-min soak (EDGESTREAM_SOAK_MINUTES=N)
#   bash deploy/local/dev.sh <any edgestream command ...>
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${EDGESTREAM_VENV:-$ROOT/.venv}
PY=${EDGESTREAM_PYTHON:-}

say() { printf '[edgestream setup] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root to run: $*"; return 1; fi
}

java_major() {
  java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}'
}

ensure_java() {
  # Flink needs a Java 17+ runtime; our Flink functions in Java (src/edgestream/cloud/java)
  # are built with Maven at setup, so a JDK, not just a runtime
  if command -v java >/dev/null 2>&1 && [ "$(java_major)" -ge 17 ] 2>/dev/null &&
    command -v javac >/dev/null 2>&1; then return; fi
  say "Java 17+ JDK not found (Flink and our Java functions need it): installing openjdk-17-jdk-headless"
  if command -v apt-get >/dev/null 2>&1; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq openjdk-17-jdk-headless >/dev/null
  else
    say "no apt-get here: install a Java 17 JDK and re-run"; exit 1
  fi
}

ensure_maven() {
  # Maven resolves the Kafka broker's and Flink's jars from Maven Central (checked-in POMs)
  if command -v mvn >/dev/null 2>&1; then return; fi
  say "Maven not found (it fetches the Kafka and Flink jars): installing maven"
  if command -v apt-get >/dev/null 2>&1; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq maven >/dev/null
  else
    say "no apt-get here: install Apache Maven 3.8+ and re-run"; exit 1
  fi
}

ensure_browser() {
  # the dashboard's browser test drives Debian's chromium through Playwright (no browser
  # download: the test points Playwright at this one)
  if command -v chromium >/dev/null 2>&1 || [ -n "${EDGESTREAM_CHROMIUM:-}" ]; then return; fi
  say "chromium not found (the dashboard's browser test needs it): installing chromium"
  if command -v apt-get >/dev/null 2>&1; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
  else
    say "no apt-get here: install Chromium and set EDGESTREAM_CHROMIUM to its path"; exit 1
  fi
}

ensure_jars() {
  # once per POM content (cached in $EDGESTREAM_HOME/jars; Maven's own cache is ~/.m2): the
  # Kafka broker, Flink's Kafka connector and Avro, and our Flink functions' jar
  say "resolving the Kafka and Flink jars from Maven Central, building our Flink functions"
  "$VENV/bin/python" -m edgestream.cloud.jvm
}

pick_python() {
  if [ -n "$PY" ]; then echo "$PY"; return; fi
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 12)))'; then
      echo "$candidate"; return
    fi
  done
  say "Python 3.11 or 3.12 is required (apache-flink 2.0.1 wheels): install python3.11"; exit 1
}

ensure_venv() {
  local stamp="$VENV/.edgestream-installed" want
  want=$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return; fi
  if [ ! -x "$VENV/bin/python" ]; then
    local python; python=$(pick_python)
    say "creating $VENV with $python"
    "$python" -m venv "$VENV"
  fi
  local uv=("$VENV/bin/python" -m uv)
  if ! "${uv[@]}" --version >/dev/null 2>&1; then
    if command -v uv >/dev/null 2>&1; then
      uv=(uv)  # a venv made by uv has no pip: use the uv on PATH
    else
      say "installing uv into the venv"
      "$VENV/bin/python" -m pip --version >/dev/null 2>&1 || "$VENV/bin/python" -m ensurepip -q
      "$VENV/bin/python" -m pip install -q uv
    fi
  fi
  say "installing edgestream and its dependencies (first time: ~1-3 min)"
  "${uv[@]}" pip install -q --python "$VENV/bin/python" -e "$ROOT[dev]"
  "${uv[@]}" pip check --python "$VENV/bin/python" >/dev/null 2>&1 ||
    { say "dependency conflict: run uv pip check --python $VENV/bin/python"; exit 1; }
  echo "$want" >"$stamp"
}

setup() {
  ensure_java
  ensure_maven
  ensure_venv
  ensure_jars
}

cmd=${1:-help}
case "$cmd" in
  setup) setup ;;
  test)
    shift
    setup
    ensure_browser
    cd "$ROOT"
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  soak)
    shift
    setup
    cd "$ROOT"
    exec "$VENV/bin/python" -m pytest -m soak tests/test_soak.py -s "$@"
    ;;
  help | -h | --help)
    sed -n '2,8p' "$0"
    ;;
  *)
    setup
    exec "$VENV/bin/edgestream" "$@"
    ;;
esac
