#!/usr/bin/env bash
# A throwaway single-node OpenSearch for development and tests: `start | stop | status`.
#
# Obtains the integ-test zip of OpenSearch 2.19.x from Maven Central with the ordinary Maven
# client, caches it under ~/.cache/obshub/ (outside the repo), and runs one node on 127.0.0.1.
# That distribution carries only the transport module: plain HTTP, no security plugin, no
# painless, no _delete_by_query/_reindex, no ISM (the store is designed for that: docs/opensearch.md).
#
#   scripts/opensearch.sh start  [--port 9250] [--transport-port PORT+100] [--dir DIR]
#                                [--heap 1g] [--timeout 180] [--watch-pid PID]
#   scripts/opensearch.sh stop   [--port 9250] [--dir DIR]
#   scripts/opensearch.sh status [--port 9250] [--dir DIR]
#   scripts/opensearch.sh fetch            # download + unpack only (CI warm-up)
#
# --dir holds the node's config/, data/, logs/ and opensearch.pid (default
# ~/.cache/obshub/node-PORT). `start` prints the URL on stdout and returns once the cluster is
# yellow or green; `stop` sends SIGTERM and waits for the JVM to exit (SIGKILL after 60 s).
# --watch-pid: stop the node when that process exits (a test run killed with SIGKILL must not
# leave a 1 GiB JVM behind).
# Env: OBSHUB_OPENSEARCH_VERSION (default below), OBSHUB_CACHE_DIR (default ~/.cache/obshub).
set -euo pipefail

# The latest 2.19.x on Maven Central when this was written (its maven-metadata.xml lists
# 2.19.0, 2.19.1, 2.19.6). Override with OBSHUB_OPENSEARCH_VERSION to try another.
VERSION="${OBSHUB_OPENSEARCH_VERSION:-2.19.6}"
CACHE="${OBSHUB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/obshub}"
ARTIFACT="org.opensearch.distribution.integ-test-zip:opensearch:${VERSION}:zip"
HOME_DIR="$CACHE/opensearch-$VERSION"

cmd="${1:-}"
[ $# -gt 0 ] && shift
PORT=9250
TPORT=""
DIR=""
HEAP=1g
TIMEOUT=180
WATCH_PID=""
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --transport-port) TPORT="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    --heap) HEAP="$2"; shift 2 ;;
    --timeout) TIMEOUT="$2"; shift 2 ;;
    --watch-pid) WATCH_PID="$2"; shift 2 ;;
    *) echo "opensearch.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
TPORT="${TPORT:-$((PORT + 100))}"
DIR="${DIR:-$CACHE/node-$PORT}"
PIDFILE="$DIR/opensearch.pid"
URL="http://127.0.0.1:$PORT"

die() { echo "opensearch.sh: $*" >&2; exit 1; }
log() { echo "opensearch.sh: $*" >&2; }

find_java_home() {
  # JAVA_HOME if it holds a java, else derive it from the `java` on PATH (Debian:
  # /usr/bin/java -> /etc/alternatives/java -> /usr/lib/jvm/java-17-openjdk-amd64/bin/java).
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    echo "$JAVA_HOME"; return
  fi
  local java
  java="$(command -v java || true)"
  [ -n "$java" ] || die "no Java found: install a JDK 17+ (e.g. apt-get install openjdk-17-jdk-headless)"
  java="$(readlink -f "$java")"
  dirname "$(dirname "$java")"
}

fetch() {
  [ -x "$HOME_DIR/bin/opensearch" ] && [ -s "$HOME_DIR/modules/analysis-common/plugin-descriptor.properties" ] && return
  command -v mvn >/dev/null || die "Maven not found: install it (e.g. apt-get install maven) or set OBSHUB_TEST_OPENSEARCH_URL"
  command -v unzip >/dev/null || die "unzip not found (apt-get install unzip)"
  mkdir -p "$CACHE"
  # Several test sessions may start at once: one downloads, the others wait on the lock.
  exec 9>"$CACHE/.fetch.lock"
  flock 9
  if [ ! -x "$HOME_DIR/bin/opensearch" ]; then
    local zip="$CACHE/opensearch-$VERSION.zip"
    if [ ! -s "$zip" ]; then
      log "downloading $ARTIFACT (~55 MB) with Maven"
      mvn -B -q -C -Dstyle.color=never dependency:copy -Dartifact="$ARTIFACT" -DoutputDirectory="$CACHE" >&2 \
        || die "mvn could not fetch $ARTIFACT"
    fi
    local tmp="$CACHE/.unpack-$$"
    rm -rf "$tmp" && mkdir -p "$tmp"
    unzip -q "$zip" -d "$tmp"
    rm -rf "$HOME_DIR"
    mv "$tmp/opensearch-$VERSION" "$HOME_DIR"
    rm -rf "$tmp"
  fi
  if [ ! -s "$HOME_DIR/modules/analysis-common/plugin-descriptor.properties" ]; then
    fetch_analysis_common
  fi
  flock -u 9
}

# The integ-test zip has no modules but transport-netty4; every other distribution ships the
# analysis-common module, whose tokenizers and filters the events' `message` analyzer uses
# (obshub/store/opensearch/mappings.py). Its jar is on Maven Central (~200 KB); a module is
# that jar plus a descriptor. (`extended.plugins` stays empty: its only link to lang-painless,
# a scripted token filter, is not used and that module is absent too.)
fetch_analysis_common() {
  local art="org.opensearch.plugin:analysis-common:$VERSION:jar"
  local tmp="$HOME_DIR/modules/.analysis-common-$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  log "downloading $art (~200 KB) with Maven"
  mvn -B -q -C -Dstyle.color=never dependency:copy -Dartifact="$art" -DoutputDirectory="$tmp" >&2 \
    || { rm -rf "$tmp"; die "mvn could not fetch $art"; }
  cat >"$tmp/plugin-descriptor.properties" <<EOF
description=Adds "built in" analyzers to OpenSearch.
version=$VERSION
name=analysis-common
classname=org.opensearch.analysis.common.CommonAnalysisPlugin
java.version=11
opensearch.version=$VERSION
custom.foldername=
extended.plugins=
has.native.controller=false
EOF
  rm -rf "$HOME_DIR/modules/analysis-common"
  mv "$tmp" "$HOME_DIR/modules/analysis-common"
}

pid_alive() {
  [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

health() {
  curl -fsS --max-time 5 "$URL/_cluster/health" 2>/dev/null
}

write_config() {
  local conf="$DIR/config"
  mkdir -p "$conf" "$DIR/data" "$DIR/logs" "$DIR/tmp"
  cp "$HOME_DIR/config/log4j2.properties" "$conf/"
  mkdir -p "$conf/jvm.options.d"
  # The stock jvm.options writes gc logs and heap dumps relative to the shared install dir;
  # point them at this node's dir so several nodes can share one cached install.
  sed -e "s#logs/gc.log#$DIR/logs/gc.log#; s#HeapDumpPath=data#HeapDumpPath=$DIR/data#; s#ErrorFile=logs/#ErrorFile=$DIR/logs/#" \
    -e "s#filecount=32,filesize=64m#filecount=4,filesize=16m#" \
    "$HOME_DIR/config/jvm.options" >"$conf/jvm.options"
  cat >"$conf/opensearch.yml" <<EOF
# Written by scripts/opensearch.sh: a disposable single-node test cluster.
cluster.name: obshub-dev
node.name: obshub-$PORT
path.data: $DIR/data
path.logs: $DIR/logs
network.host: 127.0.0.1
http.port: $PORT
transport.port: $TPORT
discovery.type: single-node
# Test disks are small and shared: never flip indices read-only on a fullish disk.
cluster.routing.allocation.disk.threshold_enabled: false
cluster.routing.allocation.disk.watermark.low: 97%
cluster.routing.allocation.disk.watermark.high: 98%
cluster.routing.allocation.disk.watermark.flood_stage: 99%
bootstrap.memory_lock: false
# One node: replicas could never be assigned and would keep every index yellow.
cluster.default_number_of_replicas: 0
EOF
}

start() {
  if pid_alive; then
    if health >/dev/null; then echo "$URL"; return; fi
  fi
  if curl -fsS --max-time 2 "$URL" >/dev/null 2>&1; then
    die "port $PORT already answers HTTP but is not the node in $DIR"
  fi
  fetch
  local jh
  jh="$(find_java_home)"
  write_config
  rm -f "$PIDFILE"
  local runner=()
  if [ "$(id -u)" = 0 ]; then
    # OpenSearch refuses to run as root. A user namespace maps uid 1000 inside to root
    # outside: the JVM sees a non-root uid while files stay root's (no useradd, no chown).
    command -v unshare >/dev/null || die "running as root needs unshare(1) (util-linux)"
    runner=(unshare --user --map-user=1000 --map-group=1000)
  fi
  log "starting OpenSearch $VERSION on $URL (transport $TPORT, heap $HEAP, dir $DIR)"
  # setsid: the node must not die with the shell or test runner's process group that started it.
  JAVA_HOME="$jh" OPENSEARCH_JAVA_HOME="$jh" OPENSEARCH_PATH_CONF="$DIR/config" \
    OPENSEARCH_TMPDIR="$DIR/tmp" OPENSEARCH_JAVA_OPTS="-Xms$HEAP -Xmx$HEAP" \
    setsid nohup "${runner[@]}" "$HOME_DIR/bin/opensearch" -p "$PIDFILE" \
    >"$DIR/logs/console.log" 2>&1 </dev/null &
  local launcher=$!
  local deadline=$((SECONDS + TIMEOUT))
  while [ $SECONDS -lt $deadline ]; do
    if ! kill -0 "$launcher" 2>/dev/null && ! pid_alive; then
      tail -n 40 "$DIR/logs/console.log" >&2 || true
      die "OpenSearch exited during startup (log: $DIR/logs/console.log)"
    fi
    local h
    if h="$(curl -fsS --max-time 5 "$URL/_cluster/health?wait_for_status=yellow&timeout=2s" 2>/dev/null)" \
        && [[ "$h" == *'"status":"green"'* || "$h" == *'"status":"yellow"'* ]]; then
      [ -s "$PIDFILE" ] || echo "$launcher" >"$PIDFILE"
      [ -n "$WATCH_PID" ] && watch_owner "$(cat "$PIDFILE")"
      log "up in ${SECONDS}s"
      echo "$URL"
      return
    fi
    sleep 1
  done
  tail -n 40 "$DIR/logs/console.log" >&2 || true
  stop || true
  die "OpenSearch not yellow/green within ${TIMEOUT}s (log: $DIR/logs/console.log)"
}

watch_owner() {
  local node_pid="$1" self
  self="$(readlink -f "$0")"
  setsid bash -c '
    while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 2; done
    kill -0 "$2" 2>/dev/null && [ "$(cat "$4/opensearch.pid" 2>/dev/null)" = "$2" ] && "$3" stop --port "$5" --dir "$4"
  ' watch "$WATCH_PID" "$node_pid" "$self" "$DIR" "$PORT" >/dev/null 2>&1 </dev/null &
}

stop() {
  if ! pid_alive; then
    rm -f "$PIDFILE"
    log "not running ($DIR)"
    return 0
  fi
  local pid
  pid="$(cat "$PIDFILE")"
  kill -TERM "$pid"
  local i
  for i in $(seq 1 600); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; log "stopped (pid $pid)"; return 0; }
    sleep 0.1
  done
  log "pid $pid ignored SIGTERM for 60 s; killing"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
}

status() {
  if pid_alive && h="$(health)"; then
    echo "running pid $(cat "$PIDFILE") $URL $h"
  elif pid_alive; then
    echo "starting or unhealthy pid $(cat "$PIDFILE") $URL"; return 1
  else
    echo "stopped ($DIR)"; return 3
  fi
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  fetch) fetch; echo "$HOME_DIR" ;;
  *) echo "usage: $0 start|stop|status|fetch [--port N] [--transport-port N] [--dir DIR] [--heap 1g] [--timeout S]" >&2; exit 2 ;;
esac
