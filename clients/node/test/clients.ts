/** The drivers the tests run the client over, and what their event tests share. */
import assert from 'node:assert/strict';
import IORedis, { Cluster as IOCluster } from 'ioredis';
import { createClient, createCluster } from 'redis';
// node-redis 5 beside 6 (an npm alias), with its default protocol, RESP2.
import { createClient as createClient5, createCluster as createCluster5 } from 'redis5';

export interface Driver {
  name: string;
  open(port: number): Promise<{ client: unknown; close(): Promise<void> }>;
  openCluster(ports: number[]): Promise<{ client: unknown; close(): Promise<void> }>;
}

export const DRIVERS: Driver[] = [
  {
    name: 'ioredis (RESP2)',
    async open(port) {
      const client = new IORedis(port, '127.0.0.1', { maxRetriesPerRequest: 1 });
      await new Promise((resolve) => client.once('ready', resolve));
      return { client, close: async () => void client.disconnect() };
    },
    async openCluster(ports) {
      const client = new IOCluster(ports.map((port) => ({ host: '127.0.0.1', port })));
      await new Promise((resolve) => client.once('ready', resolve));
      return { client, close: async () => void client.disconnect() };
    },
  },
  ...([2, 3] as const).map(
    (RESP): Driver => ({
      name: `node-redis (RESP${RESP})`,
      async open(port) {
        const client = createClient({ url: `redis://127.0.0.1:${port}`, RESP });
        client.on('error', () => {});
        await client.connect();
        return { client, close: async () => client.destroy() };
      },
      async openCluster(ports) {
        const client = createCluster({
          rootNodes: ports.map((port) => ({ url: `redis://127.0.0.1:${port}` })),
          RESP,
        });
        client.on('error', () => {});
        await client.connect();
        return { client, close: async () => client.destroy() };
      },
    }),
  ),
  {
    name: 'node-redis 5 (default: RESP2)',
    async open(port) {
      const client = createClient5({ url: `redis://127.0.0.1:${port}` });
      client.on('error', () => {});
      await client.connect();
      return { client, close: async () => client.destroy() };
    },
    async openCluster(ports) {
      const client = createCluster5({ rootNodes: ports.map((port) => ({ url: `redis://127.0.0.1:${port}` })) });
      client.on('error', () => {});
      await client.connect();
      return { client, close: async () => client.destroy() };
    },
  },
];

/** The next event a follower hands out: it is due now (the write that fires it has returned);
 *  5 s only bounds a failure, so a missing event fails the test instead of hanging the suite. */
export async function nextEvent<T>(it: AsyncIterableIterator<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('no event within 5 s')), 5000);
  });
  try {
    const r = await Promise.race([it.next(), timeout]);
    assert.ok(!r.done);
    return r.value;
  } finally {
    clearTimeout(timer);
  }
}
