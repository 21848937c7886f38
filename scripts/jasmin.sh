#!/usr/bin/env bash
# Jasmin SMS gateway (PyPI jasmin) as the loopback SMSC-side SMPP 3.4 server of the
# integration tests: the MMSC is the ESME and binds to it. Non-interactive and idempotent.
#
#   scripts/jasmin.sh install   # Jasmin into its own venv (its pins clash with .venv's); fast
#                               # when done (Redis, RabbitMQ from apt only where neither runs)
#   scripts/jasmin.sh start     # install if needed, Redis + RabbitMQ (reused when they answer),
#                               # interceptord, jasmind, then provisioning through jCli
#   scripts/jasmin.sh stop      # stops only what this script started; waits for the SMPP port
#   scripts/jasmin.sh restart   # Jasmin down and up again (an SMSC outage, for the tests)
#   scripts/jasmin.sh status    # exit 0 when the SMPP port answers
#   scripts/jasmin.sh received  # the submit_sm PDUs seen by the MT interceptor, one JSON line each
#   scripts/jasmin.sh clear     # forget them
#
# Everything listens on 127.0.0.1: SMPP $MMSC_JASMIN_SMPP_PORT (2775), jCli $MMSC_JASMIN_JCLI_PORT
# (8990), interceptor 8987, router PB 8988, client manager PB 8989, SMPP server PB 14000,
# Redis 6379, AMQP 5672 (Jasmin's defaults). ESME credentials: system_id $MMSC_JASMIN_SYSTEM_ID
# (mmsc), password $MMSC_JASMIN_PASSWORD (mmscpw). Messages are routed to an smppc connector
# "blackhole" that is never started: they wait in RabbitMQ (queue submit.sm.blackhole, purged
# on start) and nothing leaves the machine. State (venv, config, logs, pid files, the received
# file) lives in $MMSC_JASMIN_HOME (.cache/jasmin in the repository).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
STATE=${MMSC_JASMIN_HOME:-$REPO/.cache/jasmin}
JASMIN_VERSION=0.11.1
SMPP_PORT=${MMSC_JASMIN_SMPP_PORT:-2775}
JCLI_PORT=${MMSC_JASMIN_JCLI_PORT:-8990}
REDIS_PORT=${MMSC_JASMIN_REDIS_PORT:-6379}
AMQP_PORT=${MMSC_JASMIN_AMQP_PORT:-5672}
INTERCEPTOR_PORT=8987
ESME_USER=${MMSC_JASMIN_SYSTEM_ID:-mmsc}
ESME_PASS=${MMSC_JASMIN_PASSWORD:-mmscpw}

VENV=$STATE/venv
MARKER=$VENV/.mmsc-jasmin-$JASMIN_VERSION
ETC=$STATE/etc
LOGS=$STATE/log
RUN=$STATE/run
RECEIVED=$STATE/received_submit_sm.jsonl
RMQ_NODE=mmsc-jasmin@localhost

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

say() { echo "jasmin: $*"; }
die() { echo "jasmin: $*" >&2; exit 1; }

# have COMMAND: installed (also in /usr/sbin, which a non-root PATH may lack).
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# alive PIDFILE: the process named in PIDFILE runs and is what the file is for (a stale pid
# file, or one whose pid was reused by another program, does not count). /proc rather than
# kill -0, which a process of user rabbitmq refuses to a non-root caller.
alive() {
  local what
  [ -s "$1" ] || return 1
  case $(basename "$1") in
    jasmind.pid) what=jasmind.py ;;
    interceptord.pid) what=interceptord.py ;;
    redis.pid) what=redis-server ;;
    rabbitmq.pid) what=rabbitmq-server ;;
    rabbitmq-node.pid) what=beam ;;
    *) what=$ETC/ ;; # stale.pid: a daemon started with our config
  esac
  tr '\0' ' ' 2>/dev/null <"/proc/$(cat "$1")/cmdline" | grep -qF -- "$what"
}

# wait_port PORT SECONDS [PIDFILE LOG]: until PORT answers; fail early when the daemon died.
wait_port() {
  local port=$1 deadline=$((SECONDS + $2)) pidfile=${3:-} log=${4:-}
  until port_open "$port"; do
    # running (by pid, zombie-aware), not alive (by command line): right after spawn() the
    # child may still be the subshell about to exec the daemon (a race seen on loaded CI).
    if [ -n "$pidfile" ] && ! running "$(cat "$pidfile" 2>/dev/null)"; then
      [ -z "$log" ] || tail -n 30 "$log" >&2
      die "the process behind $pidfile exited before port $port answered (log: $log)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      [ -z "$log" ] || tail -n 30 "$log" >&2
      die "port $port did not answer within $2 s"
    fi
    sleep 0.2
  done
}

# wait_closed PORT SECONDS: until nothing listens on PORT any more.
wait_closed() {
  local deadline=$((SECONDS + $2))
  while port_open "$1"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# running PID: the process has not exited. An exiting process loses its command line before
# it closes its files (sockets), and a zombie has closed them: both count by /proc/PID/stat.
running() {
  local state
  state=$(sed -n 's/^.*) \(.\).*$/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# stop_pid PIDFILE NAME [SECONDS]: SIGTERM, wait, SIGKILL; then forget the pid file.
stop_pid() {
  signal_pid "$1"
  await_pid "$@"
}

# signal_pid PIDFILE: SIGTERM to the daemon, noted in PIDFILE.term for await_pid.
signal_pid() {
  alive "$1" || return 0
  cat "$1" >"$1.term"
  $SUDO kill "$(cat "$1")" 2>/dev/null || true
}

# await_pid PIDFILE NAME [SECONDS]: wait until the signalled process has exited (not only
# lost its command line), SIGKILL it after SECONDS.
await_pid() {
  local pidfile=$1 name=$2 grace=${3:-15} pid deadline
  if [ -s "$pidfile.term" ]; then
    pid=$(cat "$pidfile.term")
    deadline=$((SECONDS + grace))
    while running "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if running "$pid"; then
      say "$name (pid $pid) ignored SIGTERM for ${grace}s, killing it"
      $SUDO kill -9 "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 30))
      while running "$pid"; do
        [ "$SECONDS" -lt "$deadline" ] || die "$name (pid $pid) survives SIGKILL"
        sleep 0.1
      done
    fi
    say "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile" "$pidfile.term"
}

apt_install() {
  say "installing $* from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

do_install() {
  # Redis and RabbitMQ are usually running system services; install them only when they
  # neither answer nor are installed.
  local pkgs=()
  port_open "$REDIS_PORT" || have redis-server || pkgs+=(redis-server)
  port_open "$AMQP_PORT" || have rabbitmq-server || pkgs+=(rabbitmq-server)
  [ "${#pkgs[@]}" -eq 0 ] || apt_install "${pkgs[@]}"

  if [ -f "$MARKER" ] && "$VENV/bin/python" -c 'import jasmin' 2>/dev/null; then
    return 0
  fi
  local py="" candidate
  for candidate in python3.11 python3.12 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then py=$candidate; break; fi
  done
  [ -n "$py" ] || die "python3 is required"
  say "installing jasmin==$JASMIN_VERSION into $VENV (about half a minute)"
  mkdir -p "$STATE"
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -q "jasmin==$JASMIN_VERSION" \
       >"$STATE/install.log" 2>&1; then
    grep -v "^WARNING: Location" "$STATE/install.log" | tail -n 30 >&2
    die "pip install jasmin==$JASMIN_VERSION failed (log: $STATE/install.log)"
  fi
  touch "$MARKER"
}

write_config() {
  mkdir -p "$ETC/resource" "$ETC/store" "$LOGS" "$RUN"
  local spec
  spec=$(ls "$VENV"/lib/python3*/site-packages/txamqp/specs/standard/amqp0-9-1.stripped.xml)
  cp "$spec" "$ETC/resource/amqp0-9-1.xml"
  # jCli needs no login: it listens on loopback only, and the provisioning stays one dialogue.
  cat >"$ETC/jasmin.cfg" <<EOF
[smpp-server]
bind = 127.0.0.1
port = $SMPP_PORT
log_level = DEBUG
log_privacy = False
[smpp-server-pb]
bind = 127.0.0.1
[client-management]
bind = 127.0.0.1
[router]
bind = 127.0.0.1
[jcli]
bind = 127.0.0.1
port = $JCLI_PORT
authentication = False
[http-api]
bind = 127.0.0.1
[interceptor-client]
host = 127.0.0.1
port = $INTERCEPTOR_PORT
[amqp-broker]
host = 127.0.0.1
port = $AMQP_PORT
[redis-client]
host = 127.0.0.1
port = $REDIS_PORT
EOF
  cat >"$ETC/interceptor.cfg" <<EOF
[interceptor]
bind = 127.0.0.1
port = $INTERCEPTOR_PORT
EOF
  # Runs inside interceptord for every submit_sm (eval'd with the routable as a local: no
  # comprehensions or functions, they would not see it). Writes one JSON line per PDU: ints
  # stay ints, the C-Octet String fields (addresses, times) strings, other bytes (short_message,
  # TLV values) {"hex": ...}, Jasmin's enums their str(); "pdu" is the whole PDU as Jasmin
  # re-encodes what it parsed (the wire values of those enums). The PDU is passed on.
  # interceptord's environment names the file (see spawn).
  cat >"$ETC/intercept.py" <<'EOF'
import binascii
import json
import os
import time

from smpp.pdu.pdu_encoding import PDUEncoder

pdu = routable.pdu
record = {"time": time.time(), "user": routable.user.username, "sequence_number": pdu.seqNum}
try:
    record["pdu"] = {"hex": binascii.hexlify(PDUEncoder().encode(pdu)).decode()}
except Exception as exc:
    record["pdu_error"] = repr(exc)
text = ("service_type", "source_addr", "destination_addr", "schedule_delivery_time",
        "validity_period")
for key, value in pdu.params.items():
    if isinstance(value, (bytes, bytearray)) and key in text and value.isascii():
        record[key] = value.decode("ascii")
    elif isinstance(value, (bytes, bytearray)):
        record[key] = {"hex": binascii.hexlify(value).decode()}
    elif value is None or isinstance(value, (bool, int, float, str)):
        record[key] = value
    else:
        record[key] = str(value)
with open(os.environ["MMSC_JASMIN_RECEIVED"], "a") as fh:
    fh.write(json.dumps(record) + "\n")
EOF
}

# Redis: reuse the one on the port, else start our own (stopped again by `stop`).
ensure_redis() {
  port_open "$REDIS_PORT" && return 0
  have redis-server || apt_install redis-server
  mkdir -p "$STATE/redis"
  say "starting redis-server on 127.0.0.1:$REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --save "" --appendonly no \
    --dir "$STATE/redis" --logfile "$STATE/redis/redis.log" --pidfile "$RUN/redis.pid" \
    </dev/null >/dev/null 2>&1 9>&-
  wait_port "$REDIS_PORT" 30 "" "$STATE/redis/redis.log"
}

# RabbitMQ: reuse the one on the port, else start our own node, loopback only, with its
# own config, mnesia and log dirs (owned by user rabbitmq: the Debian wrapper drops to it).
ensure_rabbitmq() {
  port_open "$AMQP_PORT" && return 0
  have rabbitmq-server || apt_install rabbitmq-server
  port_open "$AMQP_PORT" && return 0 # the package's own service may have started
  local dir=$STATE/rabbitmq
  mkdir -p "$dir/mnesia" "$dir/log"
  printf 'listeners.tcp.1 = 127.0.0.1:%s\n' "$AMQP_PORT" >"$dir/rabbitmq.conf"
  : >"$dir/rabbitmq-env.conf"
  echo "[]." >"$dir/enabled_plugins"
  $SUDO chown -R rabbitmq:rabbitmq "$dir"
  if ! $SUDO runuser -u rabbitmq -- test -w "$dir/mnesia"; then
    die "user rabbitmq cannot write $dir (a parent directory is closed to it):" \
      "set MMSC_JASMIN_HOME elsewhere"
  fi
  epmd -names >/dev/null 2>&1 || touch "$RUN/epmd.ours" # rabbit will start epmd: ours to stop
  say "starting rabbitmq-server on 127.0.0.1:$AMQP_PORT (node $RMQ_NODE)"
  local erl_args="-kernel inet_dist_use_interface {127,0,0,1}"
  setsid $SUDO env RABBITMQ_NODENAME="$RMQ_NODE" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$AMQP_PORT" RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
    RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" RABBITMQ_MNESIA_BASE="$dir/mnesia" \
    RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_PID_FILE="$dir/rabbit.pid" \
    ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="$erl_args" \
    rabbitmq-server >"$dir/server.out" 2>&1 </dev/null 9>&- &
  echo $! >"$RUN/rabbitmq.pid"
  wait_port "$AMQP_PORT" 120 "$RUN/rabbitmq.pid" "$dir/server.out"
}

stop_rabbitmq() {
  [ -f "$RUN/rabbitmq.pid" ] || return 0
  # The node's own pid file names the Erlang VM (ours names the wrapper that launched it);
  # keep a copy: the node deletes it before the VM has exited.
  [ ! -s "$STATE/rabbitmq/rabbit.pid" ] || cp "$STATE/rabbitmq/rabbit.pid" "$RUN/rabbitmq-node.pid"
  timeout 60 $SUDO rabbitmqctl -q -n "$RMQ_NODE" stop >/dev/null 2>&1 || true
  stop_pid "$RUN/rabbitmq-node.pid" "rabbitmq node" 30
  stop_pid "$RUN/rabbitmq.pid" rabbitmq-server 30
  if [ -f "$RUN/epmd.ours" ] && ! epmd -names 2>/dev/null | grep -q '^name '; then
    epmd -kill >/dev/null 2>&1 || true
  fi
  rm -f "$RUN/epmd.ours"
}

# Accepted messages wait in submit.sm.blackhole forever (its connector never starts): empty it.
purge_queue() {
  "$VENV/bin/python" - "$AMQP_PORT" <<'EOF' || say "could not purge submit.sm.blackhole (ignored)"
import sys

import amqp

conn = amqp.Connection(f"127.0.0.1:{sys.argv[1]}", userid="guest", password="guest",
                       connect_timeout=5)
conn.connect()
try:
    ch = conn.channel()
    try:
        ch.queue_purge("submit.sm.blackhole")
    except amqp.exceptions.NotFound:
        pass  # first run: Jasmin has not declared it yet
finally:
    try:
        conn.close()
    except Exception:
        pass
EOF
}

# spawn PIDFILE LOG COMMAND...: run a daemon in its own session (a Ctrl-C or a kill of the
# caller's process group does not reach it), without the lock's fd 9, with a clean
# environment: Jasmin reads REDIS_URL, CLOUDAMQP_URL and SECTION_OPTION variables as config
# overrides, which must not leak in from the caller. The subshell execs env, env execs
# setsid, setsid (not a group leader, so it does not fork) execs the command: $! is the
# daemon's own pid.
spawn() {
  local pidfile=$1 log=$2
  shift 2
  (
    cd "$STATE"
    exec env -i PATH="$VENV/bin:/usr/bin:/bin" HOME="$STATE" LANG=C.UTF-8 ROOT_PATH="$STATE" \
      CONFIG_PATH="$ETC/" STORE_PATH="$ETC/store/" RESOURCE_PATH="$ETC/resource/" LOG_PATH="$LOGS" \
      MMSC_JASMIN_RECEIVED="$RECEIVED" setsid "$@" >"$log" 2>&1 </dev/null 9>&-
  ) &
  echo $! >"$pidfile"
}

# check_pid PIDFILE: the pid file names the daemon itself (not a wrapper around it).
check_pid() { alive "$1" || die "$1 does not name the daemon it was written for"; }

# pid_on_port PORT: the pid listening on 127.0.0.1:PORT, if ss can tell.
pid_on_port() {
  $SUDO ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2
}

# A port we need is taken: by an earlier jasmind of this state dir whose pid file was lost
# (stop it), or by something else (refuse, loudly).
free_port() {
  local port=$1 pid
  port_open "$port" || return 0
  pid=$(pid_on_port "$port")
  # An exiting process has an empty command line (files in /proc have no size): give it time.
  if [ -n "$pid" ] && [ -z "$(tr -d '\0' 2>/dev/null <"/proc/$pid/cmdline")" ]; then
    wait_closed "$port" 15 && return 0
  fi
  if [ -n "$pid" ] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$ETC/"; then
    say "port $port is held by an earlier Jasmin of $STATE (pid $pid): stopping it"
    echo "$pid" >"$RUN/stale.pid"
    stop_pid "$RUN/stale.pid" "stale Jasmin"
    wait_closed "$port" 15 || die "port $port still answers after stopping pid $pid"
    return 0
  fi
  local cmd=""
  [ -z "$pid" ] || cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" || true)
  die "port $port is taken${pid:+ by pid $pid ($cmd)}, not by a server of this script:" \
    "stop it, or choose other MMSC_JASMIN_*_PORT values"
}

# Jasmin's daemons take a machine-wide lock each (the lockfile package: /tmp/jasmind.lock,
# /tmp/interceptord.lock, hard links to a file named after host, thread and pid): only one
# of each runs per machine, and one killed with SIGKILL leaves its lock behind, so that the
# next one exits with "Lock not acquired". Break a lock whose daemon no longer runs.
break_stale_lock() {
  local lock=/tmp/$1.lock holder
  [ -e "$lock" ] || return 0
  holder=$(pgrep -f -- "/bin/$1.py" | head -n 1 || true)
  if [ -n "$holder" ] && tr '\0' ' ' 2>/dev/null <"/proc/$holder/cmdline" | grep -qF -- "$ETC/"; then
    say "an earlier $1 of $STATE (pid $holder) holds $lock: stopping it"
    echo "$holder" >"$RUN/stale.pid"
    stop_pid "$RUN/stale.pid" "stale $1"
    return 0
  fi
  [ -z "$holder" ] || die "$1 (pid $holder) runs on this machine, not from $STATE;" \
    "Jasmin runs one per machine (lock $lock): stop that one first"
  say "breaking the stale lock $lock (no $1 runs)"
  find /tmp -maxdepth 1 -samefile "$lock" ! -name "$1.lock" -delete 2>/dev/null || true
  rm -f "$lock"
}

start_daemons() {
  if alive "$RUN/jasmind.pid" && alive "$RUN/interceptord.pid" && port_open "$SMPP_PORT" &&
     port_open "$JCLI_PORT"; then
    say "reusing the running jasmind (pid $(cat "$RUN/jasmind.pid"))"
    return 0
  fi
  # Half of an earlier run (one daemon dead, or a port closed): start both afresh.
  stop_pid "$RUN/jasmind.pid" jasmind
  stop_pid "$RUN/interceptord.pid" interceptord
  free_port "$INTERCEPTOR_PORT"
  free_port "$SMPP_PORT"
  free_port "$JCLI_PORT"
  # A fresh jasmind loads the profile that jCli `persist` saved (etc/store) at start-up,
  # partly asynchronously; provisioning below would race that load, so start from nothing.
  rm -f "$ETC"/store/*
  # Logs of this run only (the previous run's stay in log.prev), so they do not grow forever.
  rm -rf "$LOGS.prev"
  mv "$LOGS" "$LOGS.prev"
  mkdir -p "$LOGS"
  break_stale_lock interceptord
  break_stale_lock jasmind
  spawn "$RUN/interceptord.pid" "$LOGS/interceptord.out" \
    "$VENV/bin/python" "$VENV/bin/interceptord.py" -c "$ETC/interceptor.cfg"
  wait_port "$INTERCEPTOR_PORT" 60 "$RUN/interceptord.pid" "$LOGS/interceptord.out"
  check_pid "$RUN/interceptord.pid"
  spawn "$RUN/jasmind.pid" "$LOGS/jasmind.out" "$VENV/bin/python" "$VENV/bin/jasmind.py" \
    -c "$ETC/jasmin.cfg" --enable-interceptor-client --disable-http-api
  wait_port "$SMPP_PORT" 60 "$RUN/jasmind.pid" "$LOGS/jasmind.out"
  wait_port "$JCLI_PORT" 60 "$RUN/jasmind.pid" "$LOGS/jasmind.out"
  check_pid "$RUN/jasmind.pid"
}

# Provision through the jCli console, waiting for each prompt; idempotent (what we manage
# is removed and added again), and verified: fails loudly when the user is not there after.
provision() {
  "$VENV/bin/python" - "$JCLI_PORT" "$ESME_USER" "$ESME_PASS" "$ETC/intercept.py" <<'EOF'
import re
import socket
import sys
import time

port, user, password, script = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
IAC = re.compile(rb"\xff(?:[\xfb-\xfe].|\xfa.*?\xff\xf0|[\xf0-\xfa\xff])", re.S)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>78]|\r")
MAIN, SESSION = "jcli : ", "> "


class JCli:
    def __init__(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.raw = b""

    def expect(self, prompt: str, timeout: float = 20.0) -> str:
        """Read until the console shows ``prompt`` at the end of its output."""
        deadline = time.monotonic() + timeout
        while True:
            text = ANSI.sub("", IAC.sub(b"", self.raw).decode("utf-8", "replace"))
            if text.endswith(prompt):
                self.raw = b""
                return text[: -len(prompt)]
            left = deadline - time.monotonic()
            if left <= 0:
                sys.exit(f"jCli: no {prompt!r} prompt within {timeout}s; got {text[-400:]!r}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                sys.exit(f"jCli closed the connection; got {text[-400:]!r}")
            self.raw += chunk

    def run(self, line: str, prompt: str = MAIN) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        out = self.expect(prompt)
        return out.split("\n", 1)[1] if "\n" in out else ""  # drop the echoed command


def add(cli: JCli, command: str, *lines: str) -> None:
    """One `-a` session: every line answered by the session prompt, `ok` by the main one."""
    cli.run(command, SESSION)
    for line in lines:
        out = cli.run(line, SESSION)
        if re.search(r"error|unknown|invalid", out, re.I):
            sys.exit(f"jCli: {command}: {line!r} -> {out.strip()}")
    out = cli.run("ok")
    if "Successfully added" not in out:
        sys.exit(f"jCli: {command} failed: {out.strip()}")


cli = JCli()
cli.sock.sendall(b"\r\n")  # the console draws its prompt once it sees input
cli.expect(MAIN)
# Remove what an earlier start left (when the daemons are reused), then add it afresh.
# Nothing is persisted: every start provisions (a few hundred milliseconds).
cli.run("mtinterceptor -f")
cli.run("mtrouter -f")
cli.run(f"user -r {user}")
cli.run("group -r mmsc")
cli.run("smppccm -r blackhole")
add(cli, "group -a", "gid mmsc")
add(cli, "user -a", f"username {user}", f"password {password}", "gid mmsc", f"uid {user}")
add(cli, "smppccm -a", "cid blackhole", "host 127.0.0.1", "port 2776")
add(cli, "mtrouter -a", "type DefaultRoute", "connector smppc(blackhole)", "rate 0.00")
add(cli, "mtinterceptor -a", "type DefaultInterceptor", f"script python3({script})")
checks = {
    "user -l": rf"#{re.escape(user)}\s+mmsc\s+{re.escape(user)}\b",
    "smppccm -l": r"#blackhole\s",
    "mtrouter -l": r"DefaultRoute",
    "mtinterceptor -l": r"DefaultInterceptor",
}
for command, pattern in checks.items():
    out = cli.run(command)
    if not re.search(pattern, out):
        sys.exit(f"jCli: {command} does not show what was provisioned:\n{out}")
cli.sock.sendall(b"quit\r\n")
EOF
}

do_start() {
  local t0=$SECONDS
  do_install
  mkdir -p "$RUN" "$LOGS"
  write_config
  ensure_redis
  ensure_rabbitmq
  purge_queue
  start_daemons
  provision || die "provisioning through jCli failed (logs: $LOGS)"
  touch "$RECEIVED"
  say "SMPP server ready on 127.0.0.1:$SMPP_PORT" \
    "(system_id=$ESME_USER password=$ESME_PASS) in $((SECONDS - t0)) s"
}

# Jasmin's own daemons, until the SMPP port is closed.
stop_jasmin() {
  # Both at once: each takes about 2 s to shut down.
  signal_pid "$RUN/jasmind.pid"
  signal_pid "$RUN/interceptord.pid"
  await_pid "$RUN/jasmind.pid" jasmind
  await_pid "$RUN/interceptord.pid" interceptord
  wait_closed "$SMPP_PORT" 15 ||
    die "port $SMPP_PORT still answers (a server this script did not start?)"
}

do_stop() {
  stop_jasmin
  # Redis and RabbitMQ only when this script started them (pid files); never the system's.
  stop_pid "$RUN/redis.pid" redis-server
  stop_rabbitmq
}

# One start/stop at a time per state dir (parallel test sessions, a script and a fixture).
lock() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock -w 300 9 || die "another scripts/jasmin.sh holds $STATE/.lock"
}

case "${1:-}" in
  install) lock; do_install ;;
  start) lock; do_start ;;
  stop) lock; do_stop ;;
  # An SMSC outage: Jasmin goes down and comes back; Redis and RabbitMQ stay up.
  restart) lock; stop_jasmin; do_start ;;
  status)
    if port_open "$SMPP_PORT"; then say "SMPP server answers on 127.0.0.1:$SMPP_PORT"; else
      say "nothing answers on 127.0.0.1:$SMPP_PORT"; exit 1; fi ;;
  received) [ ! -f "$RECEIVED" ] || cat "$RECEIVED" ;;
  clear) mkdir -p "$STATE" && : >"$RECEIVED" ;;
  *) echo "usage: $0 install|start|stop|restart|status|received|clear" >&2; exit 2 ;;
esac
