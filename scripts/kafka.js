#!/usr/bin/env node
// Apache Kafka brokers of our own for tests, drills and CI (KRaft mode, no ZooKeeper).
//
// Usage: node scripts/kafka.js fetch                 download the broker (once; cached)
//        node scripts/kafka.js start [--nodes 3]     start a cluster, print its JSON (bootstrap, pids, dir)
//        node scripts/kafka.js stop [dir ...]        stop the cluster(s) (default: every one `start` left running)
//
// The broker is Apache Kafka's own (`org.apache.kafka:kafka_2.13`), fetched from Maven Central
// with Maven into ~/.cache/tandem-kafka/<version>/lib (TANDEM_KAFKA_CACHE overrides the folder)
// and reused from there. Each node is a combined broker + controller on free 127.0.0.1 ports,
// with its storage formatted in a temp dir; one node for the tests, three (a static three-voter
// controller quorum, replication factor 3, min.insync.replicas 2) for the drills. Ready means
// the cluster's metadata answers with every broker. Stopping kills the JVMs by pid (only pids
// recorded at start whose command line still names their temp dir) and removes the temp dir.
// Nothing here touches the machine's own services.
//
// A broker JVM's start is mostly loading and compiling classes: ≈ 4.5 s of CPU here, on a
// 2-core machine that runs a dozen of them per test suite. So the JVMs run with the C1 compiler
// only (a test broker's traffic is light) and with a class-data-sharing archive of the broker's
// classes (made once per JVM build next to the jars, by a broker that exits normally): ≈ 1.7 s
// of CPU and half the time to ready. Without the archive (another JVM, or it could not be made)
// they start as before.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePorts } from './lib/procs.js';

export const KAFKA_VERSION = process.env.TANDEM_KAFKA_VERSION ?? '4.1.1';
const CACHE = process.env.TANDEM_KAFKA_CACHE ?? join(os.homedir(), '.cache', 'tandem-kafka');
const JAVA = process.env.TANDEM_JAVA ?? 'java';
const MVN = process.env.TANDEM_MVN ?? 'mvn';
/** Heap per node: small, the machine has 2 cores and other things to run. */
const HEAP = process.env.TANDEM_KAFKA_HEAP ?? '320m';
const READY_MS = 90_000;
const TMP_PREFIX = 'tandem-kafka-';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * The broker's jars (cached): resolves with the classpath (a `lib/*` wildcard). The first call
 * runs `mvn dependency:copy-dependencies` on a generated pom; a `.complete` marker says the
 * copy finished, so an interrupted download is redone.
 */
export function ensureKafka({ quiet = false } = {}) {
  const dir = join(CACHE, KAFKA_VERSION);
  const lib = join(dir, 'lib');
  if (existsSync(join(dir, '.complete'))) return join(lib, '*');
  mkdirSync(dir, { recursive: true });
  rmSync(lib, { recursive: true, force: true });
  const dep = (g, a, v) => `<dependency><groupId>${g}</groupId><artifactId>${a}</artifactId><version>${v}</version></dependency>`;
  writeFileSync(join(dir, 'pom.xml'), `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tandem.local</groupId><artifactId>kafka-broker</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies>
    ${dep('org.apache.kafka', 'kafka_2.13', KAFKA_VERSION)}
    ${dep('org.apache.logging.log4j', 'log4j-slf4j-impl', '2.24.3')}
  </dependencies>
</project>
`);
  const started = Date.now();
  if (!quiet) process.stderr.write(`kafka: fetching org.apache.kafka:kafka_2.13:${KAFKA_VERSION} with Maven into ${lib}\n`);
  const r = spawnSync(MVN, ['-B', '-q', '-f', join(dir, 'pom.xml'), 'dependency:copy-dependencies', `-DoutputDirectory=${lib}`, '-DincludeScope=runtime'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) throw new Error(`kafka: mvn failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stdout + r.stderr).slice(-2000)}`);
  writeFileSync(join(dir, '.complete'), `${new Date().toISOString()} ${Date.now() - started} ms\n`);
  if (!quiet) process.stderr.write(`kafka: fetched in ${Date.now() - started} ms\n`);
  return join(lib, '*');
}

/**
 * A Kafka cluster id: 16 random bytes, base64url without padding (what `kafka-storage
 * random-uuid` prints) — and, like Kafka's own Uuid.randomUuid(), never starting with '-': the
 * storage tool's argument parser would read such an id as an option ("--cluster-id/-t: expected
 * one argument"), which failed one run in 64.
 */
function clusterId() {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

function nodeProperties(node, nodes, dir) {
  const n = nodes.length;
  const voters = nodes.map((x) => `${x.id}@127.0.0.1:${x.controllerPort}`).join(',');
  const minIsr = Math.min(2, n);
  return [
    'process.roles=broker,controller',
    `node.id=${node.id}`,
    `controller.quorum.voters=${voters}`,
    `listeners=PLAINTEXT://127.0.0.1:${node.port},CONTROLLER://127.0.0.1:${node.controllerPort}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${node.port}`,
    'inter.broker.listener.name=PLAINTEXT',
    'controller.listener.names=CONTROLLER',
    'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    `log.dirs=${join(dir, `node-${node.id}`, 'data')}`,
    // Few threads: a test broker on a shared 2-core machine.
    'num.network.threads=2',
    'num.io.threads=2',
    'background.threads=2',
    'num.replica.fetchers=1',
    'num.recovery.threads.per.data.dir=1',
    'log.cleaner.threads=1',
    `offsets.topic.num.partitions=${n}`,
    `offsets.topic.replication.factor=${n}`,
    'transaction.state.log.num.partitions=1',
    `transaction.state.log.replication.factor=${n}`,
    `transaction.state.log.min.isr=${minIsr}`,
    `share.coordinator.state.topic.replication.factor=${n}`,
    `share.coordinator.state.topic.min.isr=${minIsr}`,
    `default.replication.factor=${n}`,
    `min.insync.replicas=${minIsr}`,
    'num.partitions=1',
    'auto.create.topics.enable=false',
    'group.initial.rebalance.delay.ms=0',
    // Tests use short consumer session timeouts (the broker's floor is 6 s by default).
    'group.min.session.timeout.ms=1000',
    // A dead broker leaves the ISR within seconds (default 30 s), so acks=all writes go on.
    'replica.lag.time.max.ms=5000',
    'unclean.leader.election.enable=false',
    '',
  ].join('\n');
}

const LOG4J = `status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = \${sys:tandem.kafka.log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
# Members joining, failing (session expired) and leaving, rebalances: what explains a stalled group.
logger.groups.name = org.apache.kafka.coordinator.group
logger.groups.level = info
`;

/**
 * The class-data-sharing archive for this JVM build, named by a hash of `java -version`: another
 * JVM never maps an archive it cannot use (it would start without it, but say so in every
 * broker's log). Undefined when `java -version` fails.
 */
let archiveFile = null;
function archivePath() {
  if (archiveFile !== null) return archiveFile;
  const v = spawnSync(JAVA, ['-version'], { encoding: 'utf8' });
  archiveFile = v.status !== 0 ? undefined : join(CACHE, KAFKA_VERSION, `broker-${createHash('sha256').update(`${v.stderr}${v.stdout}`).digest('hex').slice(0, 12)}.jsa`);
  return archiveFile;
}

/** Made or found once per process. */
let archiveReady;

/**
 * The archive's path, made first if missing (≈ 6 s, once per machine): a one-node broker started
 * with ArchiveClassesAtExit and stopped with SIGTERM once ready — the JVM writes the archive as it
 * exits normally — then renamed into place, so that no broker maps a half-written file. A JVM
 * that writes none is remembered in a marker next to it, and not asked again; brokers then start
 * without it, as they do when making it failed for any other reason.
 */
export function ensureArchive({ quiet = false } = {}) {
  archiveReady ??= (async () => {
    const path = archivePath();
    if (path === undefined || existsSync(`${path}.failed`)) return undefined;
    if (existsSync(path)) return path;
    const temp = `${path}.${process.pid}.tmp`;
    const started = Date.now();
    let cluster;
    try {
      cluster = await startKafka({ nodes: 1, cds: { make: temp } });
      const pid = cluster.pid(1);
      process.kill(pid, 'SIGTERM');
      const until = Date.now() + 60_000;
      while (alive(pid) && Date.now() < until) await sleep(100);
      if (!existsSync(temp)) {
        writeFileSync(`${path}.failed`, `${new Date().toISOString()} the JVM wrote no archive as it exited\n`);
        throw new Error('the JVM wrote no archive as it exited');
      }
      renameSync(temp, path);
      if (!quiet) process.stderr.write(`kafka: class-data-sharing archive made in ${Date.now() - started} ms: ${path}\n`);
      return path;
    } catch (err) {
      if (!quiet) process.stderr.write(`kafka: no class-data-sharing archive (${err.message}); brokers start without it\n`);
      return undefined;
    } finally {
      rmSync(temp, { force: true });
      await cluster?.stop();
    }
  })();
  return archiveReady;
}

function javaArgs(classpath, dir, node, cds) {
  const nodeDir = join(dir, `node-${node.id}`);
  return [
    `-Xmx${HEAP}`, '-Xms64m', '-XX:+UseSerialGC', '-XX:+ExitOnOutOfMemoryError', '-Djava.awt.headless=true',
    '-XX:TieredStopAtLevel=1',
    ...(cds.use !== undefined ? [`-XX:SharedArchiveFile=${cds.use}`] : cds.make !== undefined ? [`-XX:ArchiveClassesAtExit=${cds.make}`] : []),
    `-Dlog4j2.configurationFile=${join(dir, 'log4j2.properties')}`, `-Dtandem.kafka.log=${join(nodeDir, 'server.log')}`,
    // Names the cluster's temp dir: stop() checks it before it kills a recorded pid.
    `-Dtandem.kafka.dir=${dir}`,
    '-cp', classpath,
  ];
}

function format(classpath, dir, node, id, cds) {
  return new Promise((resolve, reject) => {
    const props = join(dir, `node-${node.id}`, 'server.properties');
    const p = spawn(JAVA, [...javaArgs(classpath, dir, node, cds.use !== undefined ? cds : {}), 'kafka.tools.StorageTool', 'format', `--cluster-id=${id}`, '-c', props, '--ignore-formatted'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    p.once('error', reject);
    p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`kafka: formatting node ${node.id} failed (exit ${code}): ${out.slice(-1500)}`))));
  });
}

/** Starts one node's JVM (detached, its own process group; output to files in its dir); returns its pid. */
function launch(classpath, dir, node, cds) {
  const nodeDir = join(dir, `node-${node.id}`);
  const out = openSync(join(nodeDir, 'stdout.log'), 'a');
  const child = spawn(JAVA, [...javaArgs(classpath, dir, node, cds), 'kafka.Kafka', join(nodeDir, 'server.properties')], { stdio: ['ignore', out, out], detached: true });
  closeSync(out);
  child.unref();
  return child.pid;
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Is `pid` one of this cluster's JVMs (and not a pid reused by something else)? */
function ours(pid, dir) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`-Dtandem.kafka.dir=${dir}`);
  } catch {
    return false;
  }
}

async function killPid(pid, dir, signal) {
  if (!ours(pid, dir)) return;
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  const until = Date.now() + (signal === 'SIGKILL' ? 10_000 : 30_000);
  while (alive(pid) && ours(pid, dir) && Date.now() < until) await sleep(50);
  if (alive(pid) && ours(pid, dir)) {
    process.kill(pid, 'SIGKILL');
    while (alive(pid) && ours(pid, dir)) await sleep(50);
  }
}

function tail(file, n = 1500) {
  try {
    return readFileSync(file, 'utf8').slice(-n);
  } catch {
    return '';
  }
}

/** Resolves once the cluster's metadata lists `expected` brokers (asked through @platformatic/kafka's Admin). */
async function waitReady(bootstrap, expected, pids, dir, timeout = READY_MS) {
  const { Admin } = await import('@platformatic/kafka');
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    for (const [id, pid] of pids) {
      if (pid !== undefined && !alive(pid)) {
        const logs = [join(dir, `node-${id}`, 'stdout.log'), join(dir, `node-${id}`, 'server.log')];
        const err = new Error(`kafka: node ${id} exited while starting: ${logs.map((f) => tail(f)).join('')}`);
        // Its port was taken between the pick and the bind (see startKafka).
        if (logs.some((f) => /BindException|Address already in use/.test(tail(f, Infinity)))) err.code = 'KAFKA_PORT_TAKEN';
        throw err;
      }
    }
    const admin = new Admin({ clientId: 'tandem-kafka-ready', bootstrapBrokers: bootstrap, retries: 0, timeout: 2_000, connectTimeout: 1_000 });
    try {
      const md = await admin.metadata({ topics: [] });
      if (md.brokers.size >= expected) return;
      last = `${md.brokers.size} of ${expected} brokers`;
    } catch (err) {
      last = err.message;
    } finally {
      await admin.close().catch(() => {});
    }
    if (Date.now() > deadline) throw new Error(`kafka: not ready after ${timeout} ms (${last})`);
    await sleep(200);
  }
}

/**
 * Starts a cluster of `nodes` combined broker+controller nodes; resolves once it is ready.
 * The returned object stops it, and kills and restarts single nodes (for drills and tests).
 */
export async function startKafka({ nodes: count = 1, cds } = {}) {
  const classpath = ensureKafka();
  if (cds === undefined) {
    const archive = await ensureArchive({ quiet: true });
    cds = archive === undefined ? {} : { use: archive };
  }
  // Its ports are free when picked (freePorts), but another picker may ask for the same one
  // before the JVM binds it: a node that found its port taken starts again on new ones.
  for (let tries = 1; ; tries++) {
    try {
      return await startCluster(classpath, count, cds);
    } catch (err) {
      if (tries >= 3 || err.code !== 'KAFKA_PORT_TAKEN') throw err;
    }
  }
}

async function startCluster(classpath, count, cds) {
  const dir = mkdtempSync(join(os.tmpdir(), TMP_PREFIX));
  try {
    const ports = await freePorts(count * 2);
    const nodes = Array.from({ length: count }, (_, i) => ({ id: i + 1, port: ports[2 * i], controllerPort: ports[2 * i + 1] }));
    writeFileSync(join(dir, 'log4j2.properties'), LOG4J);
    for (const node of nodes) {
      mkdirSync(join(dir, `node-${node.id}`));
      writeFileSync(join(dir, `node-${node.id}`, 'server.properties'), nodeProperties(node, nodes, dir));
    }
    const id = clusterId();
    await Promise.all(nodes.map((node) => format(classpath, dir, node, id, cds)));
    const pids = new Map(nodes.map((node) => [node.id, launch(classpath, dir, node, cds)]));
    const bootstrap = nodes.map((n) => `127.0.0.1:${n.port}`);
    const state = () => ({ dir, bootstrap, nodes: nodes.map((n) => ({ ...n, pid: pids.get(n.id) })) });
    const save = () => writeFileSync(join(dir, 'cluster.json'), JSON.stringify(state(), null, 2));
    save();
    await waitReady(bootstrap, count, pids, dir);
    return {
      dir,
      bootstrap,
      nodes,
      pid: (nodeId) => pids.get(nodeId),
      /** Signals one node (SIGKILL by default) and waits until it has exited. */
      async kill(nodeId, signal = 'SIGKILL') {
        const pid = pids.get(nodeId);
        if (pid !== undefined) await killPid(pid, dir, signal);
        pids.set(nodeId, undefined);
        save();
      },
      /** Starts a stopped node again (same ports, same data); resolves once it answers metadata requests with every broker. */
      async restart(nodeId) {
        const node = nodes.find((n) => n.id === nodeId);
        if (!node) throw new Error(`kafka: no node ${nodeId}`);
        if (pids.get(nodeId) !== undefined && alive(pids.get(nodeId))) return;
        pids.set(nodeId, launch(classpath, dir, node, cds));
        save();
        // Asked of the restarted node itself: the others list a dead broker until it is fenced.
        await waitReady([`127.0.0.1:${node.port}`], count, new Map([[nodeId, pids.get(nodeId)]]), dir);
      },
      /** Kills every node and removes the temp dir; `keep`: leaves the dir (the nodes' logs) in place. */
      async stop({ keep = false } = {}) {
        await stopCluster(dir, { keep });
      },
    };
  } catch (err) {
    await stopCluster(dir);
    throw err;
  }
}

/** Kills the JVMs recorded in a cluster dir's cluster.json (only pids still naming that dir) and removes the dir, unless `keep`. */
export async function stopCluster(dir, { keep = false } = {}) {
  let state;
  try {
    state = JSON.parse(readFileSync(join(dir, 'cluster.json'), 'utf8'));
  } catch {
    state = { nodes: [] };
  }
  await Promise.all(state.nodes.filter((n) => n.pid).map((n) => killPid(n.pid, dir, 'SIGKILL')));
  if (!keep) rmSync(dir, { recursive: true, force: true });
}

/** Clusters that `start` on the command line left running (not those a test or drill holds). */
function clusterDirs() {
  return readdirSync(os.tmpdir()).filter((d) => d.startsWith(TMP_PREFIX)).map((d) => join(os.tmpdir(), d)).filter((d) => existsSync(join(d, 'cli')));
}

async function main(args) {
  const cmd = args[0];
  if (cmd === 'fetch') {
    console.log(ensureKafka());
    await ensureArchive();
  } else if (cmd === 'start') {
    const i = args.indexOf('--nodes');
    const nodes = i >= 0 ? Number(args[i + 1]) : 1;
    if (!Number.isInteger(nodes) || nodes < 1 || nodes > 5) throw new Error('--nodes: 1 to 5');
    const started = Date.now();
    const cluster = await startKafka({ nodes });
    writeFileSync(join(cluster.dir, 'cli'), ''); // `stop` without a dir stops only these
    console.log(JSON.stringify({ bootstrap: cluster.bootstrap.join(','), brokers: cluster.bootstrap, dir: cluster.dir, nodes: cluster.nodes.map((n) => ({ ...n, pid: cluster.pid(n.id) })), startMs: Date.now() - started }));
  } else if (cmd === 'stop') {
    const dirs = args.length > 1 ? args.slice(1) : clusterDirs();
    for (const d of dirs) await stopCluster(d);
    console.log(JSON.stringify({ stopped: dirs }));
  } else {
    console.error('usage: node scripts/kafka.js fetch | start [--nodes N] | stop [dir ...]');
    process.exit(2);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((err) => {
    console.error(err.message);
    process.exit(1);
  });
}
