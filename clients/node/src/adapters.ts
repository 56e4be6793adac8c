/**
 * One adapter per driver: send a command to the node that serves a key (or any node),
 * send to every primary, subscribe. Everything else is shared.
 */
import { keySlot } from './slot';

export interface Subscription {
  close(): Promise<void>;
}

/** One primary's answer to a server-wide write. */
export interface NodeResult {
  /** host:port */
  node: string;
  reply?: unknown;
  /** Set when the node failed (the driver's error, or the server's). */
  error?: unknown;
}

async function settled(node: string, p: Promise<unknown>): Promise<NodeResult> {
  try {
    return { node, reply: await p };
  } catch (error) {
    return { node, error: error ?? new Error('rejected') };
  }
}

export interface Adapter {
  readonly driver: 'ioredis' | 'node-redis';
  readonly cluster: boolean;
  /** Sends to the primary serving `key`'s slot (any node when `key` is undefined). */
  send(args: string[], key: string | undefined, readonly: boolean): Promise<unknown>;
  /**
   * Sends to every primary (one server: that server) and waits for every one: each node's
   * reply or error, in order. Never rejects for a node's error.
   */
  sendAll(args: string[]): Promise<NodeResult[]>;
  /**
   * Subscribes on a connection of its own; `onMessage` gets each message, `onReconnect` is
   * called when the connection came back (the caller catches up). Resolves once subscribed.
   */
  subscribe(channel: string, onMessage: (message: string) => void, onReconnect: () => void): Promise<Subscription>;
}

// The drivers are peer dependencies, used through their public methods only: the
// shapes below are what this file calls.
/* eslint-disable @typescript-eslint/no-explicit-any */
type Any = any;

export function isIORedis(client: Any): boolean {
  return typeof client?.call === 'function' && typeof client?.callBuffer === 'function';
}

export function isNodeRedis(client: Any): boolean {
  return typeof client?.sendCommand === 'function' && !isIORedis(client);
}

export function adapterFor(client: unknown): Adapter {
  if (isIORedis(client)) return new IORedisAdapter(client);
  if (isNodeRedis(client)) return new NodeRedisAdapter(client);
  throw new TypeError('quota: pass an ioredis Redis or Cluster, or a node-redis client or cluster');
}

// ----- ioredis -----------------------------------------------------------------

let slotCommandClass: Any;

/**
 * An ioredis Command, optionally with its slot. ioredis Cluster routes a command by
 * `command.getSlot()`, computed from the key positions of its command table, where
 * QUOTA.* is missing (it would go to a random node and follow MOVED): the slot is given.
 * No `keyPrefix` is applied (ioredis would prefix FCALL's key but not QUOTA.*'s): tree
 * keys are sent as given.
 */
function ioCommand(client: Any, name: string, args: string[], slot: number | undefined): Any {
  if (!slotCommandClass) {
    // A Cluster's nodes are Redis instances; Redis.Command is ioredis's public Command class.
    const instance: Any = client.isCluster ? client.nodes('all')[0] : client;
    const Base = instance?.constructor?.Command ?? require('ioredis').Command;
    slotCommandClass = class extends Base {
      quotaSlot: number | undefined;
      getSlot(): number | null {
        return this.quotaSlot ?? super.getSlot();
      }
    };
  }
  const command = new slotCommandClass(name, args, { replyEncoding: 'utf8' });
  command.quotaSlot = slot;
  return command;
}

class IORedisAdapter implements Adapter {
  readonly driver = 'ioredis' as const;
  readonly cluster: boolean;
  constructor(private readonly client: Any) {
    this.cluster = client.isCluster === true;
  }

  async send(args: string[], key: string | undefined, _readonly: boolean): Promise<unknown> {
    const [name, ...rest] = args as [string, ...string[]];
    const slot = this.cluster && key !== undefined ? keySlot(key) : undefined;
    const command = ioCommand(this.client, name, rest, slot);
    this.client.sendCommand(command);
    return command.promise;
  }

  async sendAll(args: string[]): Promise<NodeResult[]> {
    const [name, ...rest] = args as [string, ...string[]];
    const nodes: Any[] = this.cluster ? this.client.nodes('master') : [this.client];
    return Promise.all(
      nodes.map((n) => {
        const command = ioCommand(this.client, name, rest, undefined);
        n.sendCommand(command);
        return settled(`${n.options?.host}:${n.options?.port}`, command.promise);
      }),
    );
  }

  async subscribe(
    channel: string,
    onMessage: (message: string) => void,
    onReconnect: () => void,
  ): Promise<Subscription> {
    if (this.cluster) return subscribeIOCluster(this.client, channel, onMessage, onReconnect);
    const sub: Any = this.client.duplicate();
    sub.on('error', () => {}); // reconnects on its own; errors surface as reconnects
    let ready = false;
    sub.on('message', (ch: string, message: string) => {
      if (ch === channel) onMessage(message);
    });
    await sub.subscribe(channel);
    sub.on('ready', () => {
      // ioredis says ready before it has subscribed again: a PING queued behind the
      // SUBSCRIBE answers once it has, then the caller catches up.
      if (ready) sub.ping().then(onReconnect, onReconnect);
    });
    ready = true;
    return {
      close: async () => {
        sub.disconnect();
      },
    };
  }
}

/** How often a cluster subscriber tries its node again before it moves to another one. */
const NODE_RETRIES = 3;

/**
 * On an ioredis Cluster, a subscriber connection of its own: a plain ioredis Redis to one node
 * (a cluster broadcasts PUBLISH to every node), made from the node's options. Not the
 * Cluster's own subscriber (a duplicate Cluster's ClusterSubscriber): when its connection
 * drops it subscribes again on a new connection without telling anyone, so nothing catches
 * up (review20 F14). This one says so: after a reconnect to the same node ('ready', then a
 * PING behind the re-SUBSCRIBE), and after a move to another node (its node gone: after
 * NODE_RETRIES failed tries, 'end'), the caller catches up.
 */
async function subscribeIOCluster(
  cluster: Any,
  channel: string,
  onMessage: (message: string) => void,
  onReconnect: () => void,
): Promise<Subscription> {
  let closed = false;
  let current: Any;
  let turn = Math.floor(Math.random() * 1024);

  const nodes = async (): Promise<Any[]> => {
    let list: Any[] = cluster.nodes('all');
    if (list.length === 0 && cluster.status !== 'ready') {
      await new Promise<void>((resolve) => cluster.once('ready', () => resolve()));
      list = cluster.nodes('all');
    }
    if (list.length === 0) throw new Error('quota: the ioredis Cluster knows no node to subscribe on');
    return list;
  };

  const open = async (): Promise<void> => {
    const list = await nodes();
    const node: Any = list[turn++ % list.length];
    const o: Any = node.options;
    // ioredis's Redis class (a node's `constructor` is not it: ioredis mixes EventEmitter in).
    const ioredis: Any = require('ioredis');
    const Redis: Any = ioredis.Redis ?? ioredis.default ?? ioredis;
    const conn: Any = new Redis({
      host: o.host,
      port: o.port,
      username: o.username,
      password: o.password,
      tls: o.tls,
      family: o.family,
      connectTimeout: o.connectTimeout,
      connectionName: 'quota-follow',
      enableReadyCheck: true,
      lazyConnect: true,
      retryStrategy: (times: number) => (times > NODE_RETRIES ? null : Math.min(times * 100, 1000)),
    });
    current = conn;
    conn.on('error', () => {}); // errors surface as reconnects or as 'end'
    conn.on('message', (ch: string, message: string) => {
      if (ch === channel && conn === current) onMessage(message);
    });
    let subscribed = false;
    conn.on('ready', () => {
      // Re-subscribed on the same node (ioredis re-sends SUBSCRIBE; a PING queued behind
      // it answers once it has): catch up.
      if (subscribed && !closed && conn === current) conn.ping().then(onReconnect, onReconnect);
    });
    conn.once('end', () => {
      // This node is gone: another one. (A connection that never subscribed: its open() fails,
      // and whoever called it decides.)
      if (subscribed && !closed && conn === current) moveOn();
    });
    try {
      await conn.subscribe(channel);
    } catch (e) {
      if (current === conn) current = undefined;
      conn.disconnect();
      throw e;
    }
    subscribed = true;
  };

  const moveOn = (delay = 0): void => {
    setTimeout(() => {
      if (closed) return;
      open().then(
        () => {
          if (!closed) onReconnect();
          else current?.disconnect();
        },
        () => {
          if (!closed) moveOn(Math.min(delay * 2 || 100, 2000)); // every node failing: keep trying
        },
      );
    }, delay);
  };

  // The first subscription: each node once, before giving up.
  for (let tries = (await nodes()).length; ; ) {
    try {
      await open();
      break;
    } catch (e) {
      if (--tries <= 0) throw e;
    }
  }
  return {
    close: async () => {
      closed = true;
      current?.disconnect();
    },
  };
}

// ----- node-redis --------------------------------------------------------------

class NodeRedisAdapter implements Adapter {
  readonly driver = 'node-redis' as const;
  readonly cluster: boolean;
  constructor(private readonly client: Any) {
    // RedisCluster has the slot map (masters, getSlotMaster); a client does not.
    this.cluster = typeof client.getSlotMaster === 'function';
  }

  async send(args: string[], key: string | undefined, readonly: boolean): Promise<unknown> {
    // On a cluster, the documented raw form: sendCommand(firstKey, isReadonly, args) routes by the key.
    if (this.cluster) return this.client.sendCommand(key, readonly, args);
    return this.client.sendCommand(args);
  }

  async sendAll(args: string[]): Promise<NodeResult[]> {
    if (!this.cluster) {
      const o: Any = this.client.options?.socket ?? {};
      return [await settled(`${o.host ?? 'localhost'}:${o.port ?? 6379}`, this.client.sendCommand(args))];
    }
    const masters: Any[] = this.client.masters;
    return Promise.all(
      masters.map((m) =>
        settled(
          m.address ?? `${m.host}:${m.port}`,
          (async () => (await this.client.nodeClient(m)).sendCommand(args))(),
        ),
      ),
    );
  }

  async subscribe(
    channel: string,
    onMessage: (message: string) => void,
    onReconnect: () => void,
  ): Promise<Subscription> {
    const sub: Any = this.client.duplicate();
    sub.on('error', () => {});
    let ready = false;
    sub.on('ready', () => {
      if (ready) onReconnect();
    });
    if (!sub.isOpen) await sub.connect();
    await sub.SUBSCRIBE(channel, (message: string | Buffer) => onMessage(message.toString()));
    ready = true;
    return {
      close: async () => {
        if (typeof sub.close === 'function') await sub.close();
        else if (typeof sub.quit === 'function') await sub.quit();
        else sub.destroy?.();
      },
    };
  }
}
