/** Real servers for the tests: redis-server on free ports with the module or the Lua library. */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type Backend = 'module' | 'lua';

export const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const MODULE = path.join(ROOT, 'target', 'release', 'libquota.so');
const LOADER = path.join(ROOT, 'target', 'release', 'quota-load');

/** A free port whose cluster bus port (port + 10000) exists too. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = net.createServer();
      s.unref();
      s.on('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    if (port + 10000 <= 65535) return port;
  }
}

async function cli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-p', String(port), ...args]);
  return stdout;
}

async function waitUp(port: number, proc: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (proc.exitCode !== null) throw new Error(`redis-server on ${port} exited with ${proc.exitCode}`);
    try {
      if ((await cli(port, 'PING')).trim() === 'PONG') return;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`redis-server on ${port} did not start`);
}

export interface Server {
  port: number;
  url: string;
  backend: Backend;
  stop(): Promise<void>;
}

// Servers still running when the test process ends (a crash, an interrupt) are killed.
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const proc of live) proc.kill('SIGKILL');
});

async function startOne(
  backend: Backend,
  extra: string[],
  moduleArgs: string[],
  dir: string,
): Promise<{ port: number; proc: ChildProcess }> {
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
  if (backend === 'module') args.push('--loadmodule', MODULE, 'TEST_CLOCK', 'yes', ...moduleArgs);
  args.push(...extra);
  const proc = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'inherit'] });
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  try {
    await waitUp(port, proc);
  } catch (e) {
    await kill(proc);
    throw e;
  }
  return { port, proc };
}

async function kill(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    proc.once('exit', () => resolve());
    proc.kill('SIGKILL');
  });
}

async function load(urls: string[], settings: Record<string, number>, cluster = false): Promise<void> {
  const args = ['--test-clock'];
  for (const [k, v] of Object.entries(settings)) args.push('--set', `${k}=${v}`);
  if (cluster) args.push('--cluster');
  await run(LOADER, [...args, ...urls]);
}

/** One server. `settings`: quota settings (events_len…), as module arguments or quota-load --set. */
export async function startServer(backend: Backend, settings: Record<string, number> = {}): Promise<Server> {
  const dir = mkdtempSync(path.join(tmpdir(), 'quota-node-'));
  const moduleArgs = Object.entries(settings).flatMap(([k, v]) => [k.toUpperCase(), String(v)]);
  const { port, proc } = await startOne(backend, [], moduleArgs, dir);
  const url = `redis://127.0.0.1:${port}`;
  try {
    if (backend === 'lua') await load([url], settings);
  } catch (e) {
    await kill(proc);
    throw e;
  }
  return {
    port,
    url,
    backend,
    stop: async () => {
      await kill(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface ClusterServers {
  ports: number[];
  backend: Backend;
  stop(): Promise<void>;
}

/** Three primaries, no replicas, every slot covered, quota on each. */
export async function startCluster(backend: Backend): Promise<ClusterServers> {
  const dir = mkdtempSync(path.join(tmpdir(), 'quota-node-cluster-'));
  const procs: ChildProcess[] = [];
  const ports: number[] = [];
  const stop = async () => {
    await Promise.all(procs.map(kill));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < 3; i++) {
      const conf = path.join(dir, `nodes-${i}.conf`);
      const { port, proc } = await startOne(
        backend,
        ['--cluster-enabled', 'yes', '--cluster-config-file', conf, '--cluster-node-timeout', '5000'],
        [],
        dir,
      );
      procs.push(proc);
      ports.push(port);
    }
    await run('redis-cli', [
      '--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes',
    ]);
    for (const port of ports) {
      for (let i = 0; ; i++) {
        const info = await cli(port, 'CLUSTER', 'INFO');
        if (info.includes('cluster_state:ok')) break;
        if (i > 400) throw new Error('cluster did not come up');
        await new Promise((r) => setTimeout(r, 25));
      }
    }
    if (backend === 'lua') await load([`redis://127.0.0.1:${ports[0]}`], {}, true);
    return { ports, backend, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** `INFO errorstats` of a node, as name -> count. */
export async function errorStats(port: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const line of (await cli(port, 'INFO', 'errorstats')).split('\n')) {
    const m = /^errorstat_([^:]+):count=(\d+)/.exec(line.trim());
    if (m) out[m[1]!] = Number(m[2]);
  }
  return out;
}

export { cli };
