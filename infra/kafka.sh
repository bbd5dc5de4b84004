#!/usr/bin/env bash
# A real single-node Apache Kafka 4.x broker (KRaft, no ZooKeeper) for local use and tests,
# run from the Maven Central jars of infra/kafka/pom.xml: no release tarball, no Docker.
#
#   bash infra/kafka.sh fetch    download the jars (once; again only when pom.xml changes)
#   bash infra/kafka.sh start    fetch if needed, format the storage once, start, wait until healthy
#   bash infra/kafka.sh status   exit 0 only if the broker answers a metadata request (alias: health)
#   bash infra/kafka.sh topics   create the parcours topics that are missing (parcours.kafka)
#   bash infra/kafka.sh stop     SIGTERM, bounded wait, then SIGKILL
#   bash infra/kafka.sh reset    stop and delete the data, logs and generated config (keeps the jars)
#
# Every command is idempotent. Everything lives in the run dir ${PARCOURS_KAFKA_HOME:-<repo>/.kafka}:
#   libs/ (jars, and libs/.probe/: the compiled health probe)  config/server.properties
#   data/ (log.dirs)  logs/server.log, logs/kafka.out  kafka.pid  kafka.port
#
# Environment:
#   PARCOURS_KAFKA_HOME             run dir (default <repo>/.kafka)
#   PARCOURS_KAFKA_LIBS             jar dir (default $PARCOURS_KAFKA_HOME/libs); tests point it at
#                                   the repo's .kafka/libs so a throwaway run dir does not re-fetch
#   PARCOURS_KAFKA_PORT             client (PLAINTEXT) port on 127.0.0.1 (default 19092)
#   PARCOURS_KAFKA_CONTROLLER_PORT  KRaft controller port on 127.0.0.1 (default 19093)
#   PARCOURS_KAFKA_HEAP_OPTS        default "-Xms128m -Xmx512m"
#   PARCOURS_KAFKA_START_TIMEOUT    seconds to wait for a healthy broker (default 90)
#   PARCOURS_KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (default 30)
#   PARCOURS_PYTHON                 interpreter for `topics` (default: $VIRTUAL_ENV, <repo>/.venv, python3)
#   JAVA_HOME                       JDK to use (17+; `java` and `javac` on PATH otherwise)
#
# Secured listeners, besides the PLAINTEXT one (off unless their port is set; the broker itself and
# every kafka.sh command keep using PLAINTEXT, which stays on 127.0.0.1):
#   PARCOURS_KAFKA_SASL_SSL_PORT        a SASL_SSL listener on 127.0.0.1 (TLS, then SCRAM-SHA-512 or PLAIN)
#   PARCOURS_KAFKA_SASL_PLAINTEXT_PORT  a SASL_PLAINTEXT listener on 127.0.0.1 (the same mechanisms, no TLS)
#   PARCOURS_KAFKA_SSL_PORT             an SSL listener on 127.0.0.1 that requires a client certificate
#   PARCOURS_KAFKA_BROKER_KEYSTORE      the broker's key and certificate chain (PKCS12 or JKS file),
#   PARCOURS_KAFKA_BROKER_KEYSTORE_TYPE       for SASL_SSL and SSL; the type defaults to PKCS12
#   PARCOURS_KAFKA_BROKER_KEYSTORE_PASSWORD   (secret)
#   PARCOURS_KAFKA_BROKER_TRUSTSTORE    the CAs a client certificate must chain to (SSL listener only),
#   PARCOURS_KAFKA_BROKER_TRUSTSTORE_TYPE     PKCS12 by default
#   PARCOURS_KAFKA_BROKER_TRUSTSTORE_PASSWORD (secret)
#   PARCOURS_KAFKA_BROKER_PLAIN_JAAS_CONFIG   (secret) enables PLAIN: the broker's PlainLoginModule line,
#       org.apache.kafka.common.security.plain.PlainLoginModule required user_NAME="PASSWORD" ...;
#   PARCOURS_KAFKA_BROKER_SCRAM_USERNAME, PARCOURS_KAFKA_BROKER_SCRAM_PASSWORD (secret)
#       a SCRAM-SHA-512 user created (or its password replaced) once the broker is healthy
# The secrets are never written to the run dir nor printed: server.properties names them as
# ${env:VARIABLE}, which Kafka's EnvVarConfigProvider resolves inside the broker, and the SCRAM
# password reaches the admin client through its environment, not its command line.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
infra="$repo/infra/kafka"
home="$(realpath -m "${PARCOURS_KAFKA_HOME:-$repo/.kafka}")"
libs="$(realpath -m "${PARCOURS_KAFKA_LIBS:-$home/libs}")"
port="${PARCOURS_KAFKA_PORT:-19092}"
controller_port="${PARCOURS_KAFKA_CONTROLLER_PORT:-19093}"
sasl_ssl_port="${PARCOURS_KAFKA_SASL_SSL_PORT:-}"
sasl_plaintext_port="${PARCOURS_KAFKA_SASL_PLAINTEXT_PORT:-}"
ssl_port="${PARCOURS_KAFKA_SSL_PORT:-}"
heap_opts="${PARCOURS_KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
start_timeout="${PARCOURS_KAFKA_START_TIMEOUT:-90}"
stop_timeout="${PARCOURS_KAFKA_STOP_TIMEOUT:-30}"
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
javac="${JAVA_HOME:+$JAVA_HOME/bin/}javac"

config="$home/config/server.properties"
data="$home/data"
logs="$home/logs"
pid_file="$home/kafka.pid"
port_file="$home/kafka.port"
# The probe is compiled against the jars, so it lives (and is replaced) with them.
probe_dir="$libs/.probe"

say() { printf 'kafka.sh: %s\n' "$*"; }
die() { printf 'kafka.sh: error: %s\n' "$*" >&2; exit 1; }

now() { printf '%s' "${EPOCHREALTIME:-$(date +%s)}"; }
elapsed_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

check_port_number() {  # $1 name, $2 value
  if ! [[ $2 =~ ^[0-9]{1,5}$ ]] || ((10#$2 < 1 || 10#$2 > 65535)); then
    die "$1 must be a TCP port number, got '$2'"
  fi
}

# Serialise the commands that change a run dir (two `start`s racing would format twice).
# The descriptors are closed for the broker itself (see launch) so it does not hold the locks.
lock_home() {
  mkdir -p "$home"
  if command -v flock >/dev/null; then
    exec 9>"$home/.lock"
    flock 9
  fi
}

# ---------------------------------------------------------------------------------------- fetch

pom_hash() { sha256sum "$infra/pom.xml" | cut -d' ' -f1; }

libs_current() {
  compgen -G "$libs/kafka_2.13-*.jar" >/dev/null &&
    [[ -f $libs/.pom.sha256 && "$(<"$libs/.pom.sha256")" == "$(pom_hash)" ]]
}

cmd_fetch() {
  if libs_current; then
    say "jars up to date in $libs"
    return 0
  fi
  mkdir -p "$(dirname "$libs")"
  if command -v flock >/dev/null; then  # several run dirs may share one PARCOURS_KAFKA_LIBS
    exec 8>"$libs.lock"
    flock 8
    if libs_current; then say "jars up to date in $libs"; return 0; fi
  fi
  command -v mvn >/dev/null || die "mvn not found: install Maven 3 (Debian: apt-get install maven)"
  say "fetching Kafka jars from Maven Central into $libs"
  local started tmp="$libs.tmp.$$"
  started=$(now)
  rm -rf "$tmp"
  # A fresh directory, swapped in whole: copying over the old one would leave the jars of a
  # previous pom.xml on the classpath next to the new ones.
  # (Debian's mvn prints colour resets even with -B; the sed strips them.)
  if ! mvn -q -B -Dstyle.color=never -f "$infra/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1 | sed -e $'s/\x1b\\[[0-9;]*m//g' >&2; then
    rm -rf "$tmp"
    die "mvn dependency:copy-dependencies failed for $infra/pom.xml"
  fi
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || { rm -rf "$tmp"; die "mvn ran but no kafka_2.13 jar came out"; }
  pom_hash >"$tmp/.pom.sha256"
  rm -rf "$libs"
  mv "$tmp" "$libs"
  say "fetched $(compgen -G "$libs/*.jar" | wc -l) jars in $(elapsed_since "$started") s"
}

# -------------------------------------------------------------------------------- process state

# Prints the pid of this run dir's broker if it is alive. The command line must name this run
# dir's config file: a stale pid file whose pid was recycled is not our broker.
running_pid() {
  [[ -f $pid_file ]] || return 1
  local pid args
  pid="$(<"$pid_file")"
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  if [[ -r /proc/$pid/cmdline ]]; then
    args="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
  else
    args="$(ps -p "$pid" -o args= 2>/dev/null)" || return 1
  fi
  [[ $args == *kafka.Kafka*"$config"* ]] || return 1
  printf '%s' "$pid"
}

# alive PID: the process exists and is not a zombie. Unlike running_pid this does not look at the
# command line, which right after the fork is still this script's, until nohup execs java.
alive() {
  local state
  state="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
  [[ $state != Z* ]]
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --------------------------------------------------------------------------------- health probe

# A tiny Java client that sends one DescribeCluster (metadata) request. Java, not Python,
# because the broker needs a JDK anyway while a venv with kafka-python may not exist yet.
probe_source='
import java.time.Duration;
import java.util.Collection;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.common.Node;

/** Exits 0 only if the broker at args[0] answers a DescribeCluster request within args[1] ms. */
public final class ParcoursKafkaProbe {
    public static void main(String[] args) throws InterruptedException {
        String timeoutMs = args[1];
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "parcours-kafka-sh");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, timeoutMs);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, timeoutMs);
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "200");
        Admin admin = Admin.create(props);
        int status = 1;
        try {
            DescribeClusterResult cluster = admin.describeCluster(
                new DescribeClusterOptions().timeoutMs(Integer.parseInt(timeoutMs)));
            Collection<Node> nodes = cluster.nodes().get();
            String clusterId = cluster.clusterId().get();
            if (nodes.isEmpty()) {
                System.err.println("no broker registered yet");
            } else {
                System.out.println("cluster " + clusterId + ", brokers " + nodes);
                status = 0;
            }
        } catch (ExecutionException e) {
            System.err.println(e.getCause());
        } finally {
            admin.close(Duration.ofSeconds(1));
        }
        System.exit(status);
    }
}
'

# Creates (or replaces) one SCRAM-SHA-512 credential through the Admin API, then waits until the
# broker's metadata shows it. The password comes from the environment: a command line is visible
# to every user of the machine (ps), an environment only to the process's owner.
scram_source='
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.admin.UserScramCredentialsDescription;

/** args: bootstrap, user name; the password is $PARCOURS_KAFKA_BROKER_SCRAM_PASSWORD. Exits 0 once visible. */
public final class ParcoursKafkaScramUser {
    public static void main(String[] args) throws InterruptedException {
        String user = args[1];
        String password = System.getenv("PARCOURS_KAFKA_BROKER_SCRAM_PASSWORD");
        if (password == null || password.isEmpty()) {
            System.err.println("PARCOURS_KAFKA_BROKER_SCRAM_PASSWORD is empty");
            System.exit(1);
        }
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "parcours-kafka-sh");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        Admin admin = Admin.create(props);
        int status = 1;
        try {
            ScramCredentialInfo info = new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192);
            admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion(user, info, password))).all().get();
            long deadline = System.nanoTime() + 20_000_000_000L;
            while (System.nanoTime() < deadline) {
                try {
                    UserScramCredentialsDescription described =
                        admin.describeUserScramCredentials(List.of(user)).description(user).get();
                    if (described.credentialInfos().stream().anyMatch(i -> i.mechanism() == ScramMechanism.SCRAM_SHA_512)) {
                        status = 0;
                        break;
                    }
                } catch (ExecutionException notYet) {
                    // ResourceNotFound until the broker has applied the new metadata
                }
                Thread.sleep(100);
            }
            if (status != 0) System.err.println("the SCRAM-SHA-512 credential of " + user + " did not appear within 20 s");
        } catch (ExecutionException e) {
            System.err.println(e.getCause());
        } finally {
            admin.close(Duration.ofSeconds(1));
        }
        System.exit(status);
    }
}
'

build_probe() {
  local sum tmp
  sum="$(printf '%s\n%s' "$probe_source" "$scram_source" | sha256sum | cut -d' ' -f1)"
  [[ -f $probe_dir/.sha256 && "$(<"$probe_dir/.sha256")" == "$sum" ]] && return 0
  command -v "$javac" >/dev/null || die "javac not found: the health probe needs a JDK 17+, not just a JRE"
  # Built aside and renamed into place: run dirs sharing PARCOURS_KAFKA_LIBS may race here.
  tmp="$(mktemp -d "$libs/.probe.tmp.XXXXXX")"
  printf '%s' "$probe_source" >"$tmp/ParcoursKafkaProbe.java"
  printf '%s' "$scram_source" >"$tmp/ParcoursKafkaScramUser.java"
  "$javac" -nowarn -d "$tmp" -cp "$libs/*" "$tmp/ParcoursKafkaProbe.java" "$tmp/ParcoursKafkaScramUser.java"
  printf '%s' "$sum" >"$tmp/.sha256"
  if [[ -f $probe_dir/.sha256 && "$(<"$probe_dir/.sha256")" == "$sum" ]]; then
    rm -rf "$tmp"  # another run dir built the same probe meanwhile
    return 0
  fi
  rm -rf "$probe_dir"  # stale: built from another probe source
  mv -T "$tmp" "$probe_dir" 2>/dev/null || rm -rf "$tmp"
}

# probe BOOTSTRAP TIMEOUT_MS: prints the cluster id and brokers, exit 0 iff the broker answered.
probe() {
  # Client logging off: log4j2's default configuration would print connection-refused
  # errors on every poll while the broker is still starting.
  "$java" -Xmx64m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dlog4j2.level=OFF \
    -cp "$probe_dir:$libs/*" ParcoursKafkaProbe "$1" "$2" 8>&- 9>&-
}

# ----------------------------------------------------------------------------------- start

# sed_value VALUE: VALUE escaped for the replacement side of s|...|...|.
sed_value() { printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'; }

# The secured listeners asked for, as ",NAME://127.0.0.1:PORT..." (empty: PLAINTEXT only).
extra_listeners() {
  local out=""
  [[ -z $sasl_ssl_port ]] || out+=",SASL_SSL://127.0.0.1:$sasl_ssl_port"
  [[ -z $sasl_plaintext_port ]] || out+=",SASL_PLAINTEXT://127.0.0.1:$sasl_plaintext_port"
  [[ -z $ssl_port ]] || out+=",SSL://127.0.0.1:$ssl_port"
  printf '%s' "$out"
}

# Refuses a secured listener whose keystore, truststore or password is missing, naming the
# variable (never its value).
check_security() {
  [[ -n $sasl_ssl_port$sasl_plaintext_port$ssl_port ]] || return 0
  local name
  for name in PARCOURS_KAFKA_SASL_SSL_PORT PARCOURS_KAFKA_SASL_PLAINTEXT_PORT PARCOURS_KAFKA_SSL_PORT; do
    [[ -z ${!name:-} ]] || check_port_number "$name" "${!name}"
  done
  if [[ -n $sasl_ssl_port$ssl_port ]]; then
    [[ -n ${PARCOURS_KAFKA_BROKER_KEYSTORE:-} ]] || die "PARCOURS_KAFKA_BROKER_KEYSTORE is required with a SASL_SSL or SSL listener"
    [[ -r $PARCOURS_KAFKA_BROKER_KEYSTORE ]] || die "PARCOURS_KAFKA_BROKER_KEYSTORE: no readable file at $PARCOURS_KAFKA_BROKER_KEYSTORE"
    [[ -n ${PARCOURS_KAFKA_BROKER_KEYSTORE_PASSWORD:-} ]] || die "PARCOURS_KAFKA_BROKER_KEYSTORE_PASSWORD is required with a SASL_SSL or SSL listener"
  fi
  if [[ -n $ssl_port ]]; then
    [[ -n ${PARCOURS_KAFKA_BROKER_TRUSTSTORE:-} ]] || die "PARCOURS_KAFKA_BROKER_TRUSTSTORE is required with an SSL listener (it checks client certificates)"
    [[ -r $PARCOURS_KAFKA_BROKER_TRUSTSTORE ]] || die "PARCOURS_KAFKA_BROKER_TRUSTSTORE: no readable file at $PARCOURS_KAFKA_BROKER_TRUSTSTORE"
    [[ -n ${PARCOURS_KAFKA_BROKER_TRUSTSTORE_PASSWORD:-} ]] || die "PARCOURS_KAFKA_BROKER_TRUSTSTORE_PASSWORD is required with an SSL listener"
  fi
  if [[ -n ${PARCOURS_KAFKA_BROKER_SCRAM_USERNAME:-} ]]; then
    [[ -n ${PARCOURS_KAFKA_BROKER_SCRAM_PASSWORD:-} ]] || die "PARCOURS_KAFKA_BROKER_SCRAM_PASSWORD is required with PARCOURS_KAFKA_BROKER_SCRAM_USERNAME"
  fi
  return 0
}

# The security.properties.template lines that apply, their tags removed, the paths filled in.
render_security() {
  local sasl=del plain=del tls=del mtls=del mechanisms="SCRAM-SHA-512"
  [[ -z $sasl_ssl_port$sasl_plaintext_port ]] || sasl=keep
  [[ -z ${PARCOURS_KAFKA_BROKER_PLAIN_JAAS_CONFIG:-} ]] || { plain=keep; mechanisms+=",PLAIN"; }
  [[ -z $sasl_ssl_port$ssl_port ]] || tls=keep
  [[ -z $ssl_port ]] || mtls=keep
  [[ $sasl == keep ]] || plain=del
  tag() { if [[ $2 == keep ]]; then printf 's/^@%s //' "$1"; else printf '/^@%s /d' "$1"; fi; }
  sed -e "$(tag sasl $sasl)" -e "$(tag plain $plain)" -e "$(tag tls $tls)" -e "$(tag mtls $mtls)" \
      -e "s|\${PARCOURS_KAFKA_SASL_MECHANISMS}|$mechanisms|g" \
      -e "s|\${PARCOURS_KAFKA_BROKER_KEYSTORE_TYPE}|$(sed_value "${PARCOURS_KAFKA_BROKER_KEYSTORE_TYPE:-PKCS12}")|g" \
      -e "s|\${PARCOURS_KAFKA_BROKER_KEYSTORE}|$(sed_value "$(realpath -m "${PARCOURS_KAFKA_BROKER_KEYSTORE:-}")")|g" \
      -e "s|\${PARCOURS_KAFKA_BROKER_TRUSTSTORE_TYPE}|$(sed_value "${PARCOURS_KAFKA_BROKER_TRUSTSTORE_TYPE:-PKCS12}")|g" \
      -e "s|\${PARCOURS_KAFKA_BROKER_TRUSTSTORE}|$(sed_value "$(realpath -m "${PARCOURS_KAFKA_BROKER_TRUSTSTORE:-}")")|g" \
      "$infra/security.properties.template"
}

render_config() {
  mkdir -p "$home/config" "$data" "$logs"
  {
    sed -e "s|\${PARCOURS_KAFKA_PORT}|$port|g" \
        -e "s|\${PARCOURS_KAFKA_CONTROLLER_PORT}|$controller_port|g" \
        -e "s|\${PARCOURS_KAFKA_DATA_DIR}|$(sed_value "$data")|g" \
        -e "s|\${PARCOURS_KAFKA_EXTRA_LISTENERS}|$(extra_listeners)|g" \
        -e "s|\${PARCOURS_KAFKA_EXTRA_PROTOCOLS}|$(extra_listeners | sed -E 's|([A-Z_]+)://[^,]*|\1:\1|g')|g" \
        "$infra/server.properties.template"
    if [[ -n "$(extra_listeners)" ]]; then
      printf '\n'
      render_security
    fi
  } >"$config.tmp"
  local unknown
  # ${env:NAME} is not a kafka.sh placeholder: the broker resolves it (see security.properties.template).
  unknown="$(grep -v '^[[:space:]]*#' "$config.tmp" | grep -v -F '${env:' | grep -F -m1 "\${" || true)"
  [[ -z $unknown ]] || die "a template in $infra has a placeholder kafka.sh does not know: $unknown"
  unknown="$(grep -m1 '^@' "$config.tmp" || true)"
  [[ -z $unknown ]] || die "$infra/security.properties.template has a tag kafka.sh does not know: $unknown"
  mv "$config.tmp" "$config"
}

# The JVM settings every Kafka main class gets here; log4j2 writes to $logs (see log4j2.yaml).
kafka_java() {
  "$java" -Djava.awt.headless=true "-Dkafka.logs.dir=$logs" \
    "-Dlog4j2.configurationFile=$infra/log4j2.yaml" -cp "$libs/*" "$@"
}

format_storage() {
  # meta.properties is what `format` writes; its presence means this run dir is formatted.
  [[ -f $data/meta.properties ]] && return 0
  local cluster_id
  cluster_id="$(kafka_java -Xmx128m kafka.tools.StorageTool random-uuid 8>&- 9>&-)"
  # controller.quorum.voters is set (a static quorum), so neither --standalone nor
  # --initial-controllers applies: StorageTool refuses them together with static voters.
  kafka_java -Xmx128m kafka.tools.StorageTool format --cluster-id "$cluster_id" --config "$config" \
    8>&- 9>&- | sed 's/^/kafka.sh: /'
}

show_logs() {
  local f
  for f in "$logs/kafka.out" "$logs/server.log"; do
    [[ -s $f ]] || continue
    printf '\n----- last lines of %s -----\n' "$f" >&2
    tail -n 40 "$f" >&2
  done
}

# wait_healthy PID: 0 once the broker answers, 1 if it died or the timeout passed.
wait_healthy() {
  local pid=$1 deadline=$((SECONDS + start_timeout))
  while ((SECONDS < deadline)); do
    alive "$pid" || { say "the broker (pid $pid) exited during startup"; return 1; }
    if port_open "$port" && probe "127.0.0.1:$port" 2000 >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.3
  done
  say "the broker (pid $pid) was not healthy after ${start_timeout} s"
  return 1
}

cmd_start() {
  check_port_number PARCOURS_KAFKA_PORT "$port"
  check_port_number PARCOURS_KAFKA_CONTROLLER_PORT "$controller_port"
  [[ $port != "$controller_port" ]] || die "PARCOURS_KAFKA_PORT and PARCOURS_KAFKA_CONTROLLER_PORT are both $port"
  check_security
  local all_ports
  all_ports="$(printf '%s\n' "$port" "$controller_port" $sasl_ssl_port $sasl_plaintext_port $ssl_port)"
  [[ -z "$(sort <<<"$all_ports" | uniq -d)" ]] || die "two listeners were given the same port: $(tr '\n' ' ' <<<"$all_ports")"
  lock_home
  local pid started
  if pid="$(running_pid)"; then
    local running_port
    running_port="$(cat "$port_file" 2>/dev/null || echo '?')"
    [[ $running_port == "$port" ]] ||
      die "the broker of $home already runs on port $running_port, not $port: stop it first (bash infra/kafka.sh stop)"
    build_probe
    if probe "127.0.0.1:$port" 5000 >/dev/null 2>&1; then
      say "already running (pid $pid) and healthy at 127.0.0.1:$port"
      return 0
    fi
    say "already running (pid $pid) but not healthy yet; waiting"
    wait_healthy "$pid" || { show_logs; die "the broker of $home is running but unhealthy; try: bash infra/kafka.sh stop"; }
    say "healthy at 127.0.0.1:$port"
    return 0
  fi
  rm -f "$pid_file" "$port_file"

  cmd_fetch
  command -v "$java" >/dev/null || die "java not found: install a JDK 17+ (Debian: apt-get install openjdk-17-jdk-headless)"
  local p
  for p in $all_ports; do
    ! port_open "$p" ||
      die "127.0.0.1:$p is already in use by another process: stop it, or choose other ports with PARCOURS_KAFKA_PORT / PARCOURS_KAFKA_CONTROLLER_PORT (or the secured listeners' PARCOURS_KAFKA_*_PORT)"
  done
  build_probe
  render_config
  format_storage

  started=$(now)
  # nohup execs java, so $! is the broker's pid; stdin/out/err are detached so that a caller
  # capturing this script's output (pytest's subprocess.run) is not held open by the broker.
  # shellcheck disable=SC2086  # heap_opts is a list of JVM flags
  nohup "$java" $heap_opts -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    "-Dkafka.logs.dir=$logs" "-Dlog4j2.configurationFile=$infra/log4j2.yaml" \
    -cp "$libs/*" kafka.Kafka "$config" </dev/null >"$logs/kafka.out" 2>&1 8>&- 9>&- &
  pid=$!
  printf '%s\n' "$pid" >"$pid_file"
  printf '%s\n' "$port" >"$port_file"
  say "starting (pid $pid), logs in $logs/server.log"
  if ! wait_healthy "$pid"; then
    show_logs
    stop_pid "$pid" >/dev/null || true
    rm -f "$pid_file" "$port_file"
    die "the broker did not start; see $logs/server.log"
  fi
  say "healthy at 127.0.0.1:$port after $(elapsed_since "$started") s (pid $pid)"
  if [[ -n "$(extra_listeners)" ]]; then
    say "secured listeners: $(extra_listeners | sed -e 's/^,//' -e 's/,/, /g') (SASL mechanisms: $(grep -m1 '^sasl.enabled.mechanisms=' "$config" | cut -d= -f2 || echo none))"
  fi
  if [[ -n ${PARCOURS_KAFKA_BROKER_SCRAM_USERNAME:-} ]]; then
    add_scram_user "$pid"
  fi
}

# add_scram_user PID: the SCRAM-SHA-512 credential of $PARCOURS_KAFKA_BROKER_SCRAM_USERNAME, set
# through the PLAINTEXT listener; the password is in the helper's environment, not its arguments.
add_scram_user() {
  local user=$PARCOURS_KAFKA_BROKER_SCRAM_USERNAME
  if ! "$java" -Xmx64m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dlog4j2.level=OFF \
      -cp "$probe_dir:$libs/*" ParcoursKafkaScramUser "127.0.0.1:$port" "$user" 8>&- 9>&-; then
    stop_pid "$1" >/dev/null || true
    rm -f "$pid_file" "$port_file"
    die "could not create the SCRAM-SHA-512 credential of user '$user'; the broker was stopped"
  fi
  say "SCRAM-SHA-512 credential of user '$user' set"
}

# ------------------------------------------------------------------------------- status, stop

cmd_status() {
  local pid running_port out
  if ! pid="$(running_pid)"; then
    say "not running (run dir $home)"
    return 3
  fi
  running_port="$(<"$port_file")"
  build_probe
  if out="$(probe "127.0.0.1:$running_port" 5000 2>&1)"; then
    say "running (pid $pid), healthy at 127.0.0.1:$running_port: $out"
    return 0
  fi
  say "running (pid $pid) but not answering metadata requests at 127.0.0.1:$running_port: $out"
  return 1
}

# stop_pid PID: SIGTERM (a controlled shutdown that flushes the logs), then SIGKILL.
stop_pid() {
  local pid=$1 started deadline
  started=$(now)
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + stop_timeout))
  while [[ -n "$(running_pid)" ]] && ((SECONDS < deadline)); do sleep 0.2; done
  if [[ -n "$(running_pid)" ]]; then
    say "pid $pid still running ${stop_timeout} s after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while [[ -n "$(running_pid)" ]] && ((SECONDS < deadline)); do sleep 0.2; done
    [[ -z "$(running_pid)" ]] || die "pid $pid survived SIGKILL"
  fi
  say "stopped (pid $pid) in $(elapsed_since "$started") s"
}

cmd_stop() {
  lock_home
  local pid
  if pid="$(running_pid)"; then
    stop_pid "$pid"
  else
    say "not running (run dir $home)"
  fi
  rm -f "$pid_file" "$port_file"
}

cmd_reset() {
  cmd_stop
  rm -rf "$data" "$logs" "$home/config"
  say "deleted the data, logs and config of $home (the jars in $libs are kept)"
}

# ------------------------------------------------------------------------------------- topics

pick_python() {
  if [[ -n ${PARCOURS_PYTHON:-} ]]; then printf '%s' "$PARCOURS_PYTHON"
  elif [[ -n ${VIRTUAL_ENV:-} && -x $VIRTUAL_ENV/bin/python ]]; then printf '%s' "$VIRTUAL_ENV/bin/python"
  elif [[ -x $repo/.venv/bin/python ]]; then printf '%s' "$repo/.venv/bin/python"
  else printf 'python3'
  fi
}

cmd_topics() {
  # The topic names and partition counts have one home, parcours.kafka; this only calls it.
  cmd_status >/dev/null || die "no healthy broker in $home: run bash infra/kafka.sh start first"
  local python
  python="$(pick_python)"
  # Through the local broker's PLAINTEXT listener: drop any SASL or TLS settings of the clients.
  env -u PARCOURS_KAFKA_SASL_MECHANISM -u PARCOURS_KAFKA_SASL_USERNAME -u PARCOURS_KAFKA_SASL_PASSWORD \
    -u PARCOURS_KAFKA_SSL_CAFILE -u PARCOURS_KAFKA_SSL_CERTFILE -u PARCOURS_KAFKA_SSL_KEYFILE \
    -u PARCOURS_KAFKA_SSL_KEY_PASSWORD -u PARCOURS_KAFKA_SSL_CHECK_HOSTNAME \
    PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" \
    PARCOURS_KAFKA_BOOTSTRAP="127.0.0.1:$(<"$port_file")" \
    PARCOURS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT \
    "$python" -m parcours.kafka ensure-topics
}

# --------------------------------------------------------------------------------------- main

usage() { sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

case "${1:-}" in
  fetch) cmd_fetch ;;
  start) cmd_start ;;
  status | health) cmd_status ;;
  stop) cmd_stop ;;
  topics) cmd_topics ;;
  reset) cmd_reset ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
