import { Adapter, adapterFor } from './adapters';
import { AmountIn, amountText } from './amounts';
import { decode, DecimalFactory, Schema } from './decode';
import { Conflict, Denied, NotLoaded, serverErrorText, translateError } from './errors';
import * as R from './replies';

const S = R.SCHEMAS;

export type Backend = 'module' | 'lua';

export interface QuotaOptions<A = string> {
  /** Skip detection: 'module' (QUOTA.X) or 'lua' (FCALL quota_x). */
  backend?: Backend;
  /** Builds each amount of a reply from its exact decimal text (default: the string itself). */
  decimal?: DecimalFactory<A>;
}

/** A set of amounts: an object, a Map, or [name, amount] pairs. */
export type AmountMap = Record<string, AmountIn> | Map<string, AmountIn> | Array<[string, AmountIn]>;
/** USAGE: `{ 'chat/gpt-x': { input_tokens: 1000, output_tokens: 500 } }` (one service/model). */
export type UsageIn = Record<string, AmountMap>;
/** META pairs, in order: [name, value] pairs, a Map, or an object (insertion order). */
export type MetaIn = Array<[string, string]> | Map<string, string> | Record<string, string>;

export type Item = { cost: AmountMap; usage?: undefined } | { usage: UsageIn; cost?: undefined };

export interface RequestOptions {
  /** The PATH of the charge set. */
  path: string;
  also?: string | string[];
  id?: string;
  service?: string;
  model?: string;
  meta?: MetaIn;
  brief?: boolean;
  /** One item's cost (or use `usage`, or `items` for a batch). */
  cost?: AmountMap;
  usage?: UsageIn;
}

export interface ReserveOptions extends RequestOptions {
  ttlMs?: number;
  mode?: 'all' | 'upto' | 'dryrun';
  /** Several items (a batch): each `{cost}` or `{usage}`. */
  items?: Item[];
}

export interface ChargeOptions extends RequestOptions {
  check?: boolean;
}

export interface SetOptions {
  metric: string;
  limit: AmountIn;
  window?: string;
  /** A month's day (15), a week's day ('sunday') or a year's start ('04-01'). */
  anchor?: number | string;
  /** The zone of a day, week, month or year window: 'America/New_York', '+05:30'. */
  tz?: string;
  mode?: 'strict' | 'block' | 'open';
  warn?: number[];
  rollover?: AmountIn;
  service?: string;
  model?: string;
  low?: AmountIn;
  inflight?: boolean;
}

export interface SettleOptions {
  item?: number;
  cost?: AmountMap;
  usage?: UsageIn;
}

export interface GrantOptions {
  id?: string;
  expiresAt?: number;
  for?: string;
  period?: boolean;
  priority?: number;
  note?: string;
}

export interface TreeOptions {
  path?: string;
  depth?: number;
  count?: number;
  tag?: string;
  after?: string;
  archived?: boolean;
}

export interface UsageOptions {
  since?: number;
  until?: number;
  by?: 'hour' | 'day';
  metric?: string;
  service?: string;
  model?: string;
  group?: 'service' | 'model' | 'child' | 'tag';
}

export interface HoldHandle<A = string> {
  readonly id: string;
  readonly reply: R.ReserveReply<A>;
  /** What to commit instead of what was reserved. */
  actual(settle: { cost?: AmountMap; usage?: UsageIn }): void;
  /** The commit's reply once withHold committed (`expired` 1: the hold had expired). */
  readonly commit: R.CommitReply<A> | undefined;
}

export interface GenerateAllOptions<A = string> extends Omit<ReserveOptions, 'mode' | 'cost' | 'usage'> {
  items: Item[];
  /** Asked when not every item fits: generate the first `fits`, or stop. */
  choose: (preview: R.ReserveReply<A>) => 'first' | 'stop' | Promise<'first' | 'stop'>;
}

export interface Batch<A = string> {
  readonly id: string;
  readonly preview: R.ReserveReply<A>;
  /**
   * The reservation; a refused one (`allowed` 0, `reserved` 0) when the room went between the
   * preview and the reservation; null when the caller chose to stop or nothing fit.
   */
  readonly reservation: R.ReserveReply<A> | null;
  /** Items held (the leading ones). */
  readonly reserved: number;
  /**
   * What was reserved: 'all' (every item), 'first' (the leading `reserved` items), 'stop'
   * (nothing: the caller chose to stop, nothing fit, or the UPTO reservation was refused).
   */
  readonly choice: 'all' | 'first' | 'stop';
  commit(item: number, settle?: { cost?: AmountMap; usage?: UsageIn }): Promise<R.CommitReply<A>>;
  release(item: number): Promise<R.ReleaseReply<A>>;
  extend(ttlMs: number): Promise<R.ExtendReply>;
}

/**
 * One primary's answer to a server-wide write (price/plan set and del, clock set and advance
 * on a module cluster): on the error thrown when some primary failed, as `err.primaries`.
 */
export interface PrimaryResult {
  /** host:port */
  node: string;
  reply?: unknown;
  error?: unknown;
}

export interface Gap {
  /** The last seq handled. */
  after: number;
  /** The first seq the log still had (after a reset: the new log's first, usually 1). */
  next: number;
  /**
   * 1 when the log restarted: the tree was deleted (and maybe created again), its new log
   * counts from seq 1 and is handed out from its start; 0 when the log wrapped while away.
   */
  reset: number;
}

export interface FollowOptions {
  /**
   * The last seq already handled (0: from the start of the log), or better the last event
   * handled: then a log that restarted while away (the tree deleted and created again) is
   * told apart even when the new log has reached that seq (its event there differs).
   */
  since?: number | R.QuotaEvent<unknown>;
  /** Told when events were lost (the log wrapped while away); default: ignored. */
  onGap?: (gap: Gap) => void;
  /** Page size of the catch-up (EVENTS COUNT), default 100. */
  pageSize?: number;
}

function entries<V>(x: Record<string, V> | Map<string, V> | Array<[string, V]>): Array<[string, V]> {
  if (Array.isArray(x)) return x;
  if (x instanceof Map) return [...x.entries()];
  return Object.entries(x);
}

function itemArgs(cost: AmountMap | undefined, usage: UsageIn | undefined): string[] {
  if (cost !== undefined && usage !== undefined) throw new TypeError('quota: give cost or usage, not both');
  if (cost !== undefined) {
    const out = ['COST'];
    for (const [m, a] of entries(cost)) out.push(m, amountText(a));
    return out;
  }
  if (usage !== undefined) {
    const out: string[] = [];
    for (const [price, values] of Object.entries(usage)) {
      out.push('USAGE', price);
      for (const [n, v] of entries(values)) out.push(n, amountText(v));
    }
    return out;
  }
  return [];
}

function requestArgs(o: RequestOptions): string[] {
  const out = ['PATH', o.path];
  if (o.also !== undefined) for (const p of typeof o.also === 'string' ? [o.also] : o.also) out.push('ALSO', p);
  if (o.id !== undefined) out.push('ID', o.id);
  return out;
}

function serviceArgs(o: { service?: string; model?: string }): string[] {
  const out: string[] = [];
  if (o.service !== undefined) out.push('SERVICE', o.service);
  if (o.model !== undefined) out.push('MODEL', o.model);
  return out;
}

function metaArgs(meta: MetaIn | undefined): string[] {
  if (meta === undefined) return [];
  const list = entries(meta);
  if (list.length === 0) return [];
  const out = ['META'];
  for (const [n, v] of list) out.push(n, v);
  return out;
}

function int(n: number, what: string): string {
  if (!Number.isSafeInteger(n)) throw new TypeError(`quota: ${what} must be an integer, not ${n}`);
  return String(n);
}

/** Commands that only read: FCALL_RO on the Lua library, replica-safe on a cluster. */
const READS = new Set(['GET', 'TREE', 'HOLDS', 'HISTORY', 'EVENTS', 'GRANTS', 'USAGE', 'ESTIMATE', 'VERSION']);

/** The key each keyless Lua function works on (where a cluster routes it). */
const LUA_BOOK_KEYS: Record<string, string> = {
  PRICE: 'quota:prices',
  ESTIMATE: 'quota:prices',
  PLAN: 'quota:plans',
  DEBUG: 'quota:clock',
};

export class Quota<A = string> {
  private readonly adapter: Adapter;
  private readonly dec: DecimalFactory<A>;
  private backendPromise: Promise<Backend> | undefined;

  constructor(
    readonly client: unknown,
    options: QuotaOptions<A> = {},
  ) {
    this.adapter = adapterFor(client);
    this.dec = options.decimal ?? ((s: string) => s as unknown as A);
    if (options.backend) this.backendPromise = Promise.resolve(options.backend);
  }

  /** The backend, detected on first use (or as forced). */
  backend(): Promise<Backend> {
    this.backendPromise ??= this.detect();
    return this.backendPromise;
  }

  /**
   * Module when QUOTA.PRICE LIST answers (or is refused by the ACL: Redis answers an unknown
   * command before it checks the ACL); Lua when FCALL_RO quota_version answers; NotLoaded only
   * when the server says the command or function does not exist. Any other error (BUSY,
   * LOADING, a connection error) is the server's and passes through, translated, and nothing
   * is cached (review20 F13).
   */
  private async detect(): Promise<Backend> {
    try {
      await this.adapter.send(['QUOTA.PRICE', 'LIST'], undefined, true);
      return 'module';
    } catch (e) {
      const text = serverErrorText(e);
      if (text !== undefined && text.startsWith('NOPERM')) return 'module';
      if (text === undefined || !text.startsWith('ERR unknown command')) {
        this.backendPromise = undefined;
        throw translateError(e, 'QUOTA.PRICE');
      }
    }
    try {
      await this.adapter.send(['FCALL_RO', 'quota_version', '0'], undefined, true);
      return 'lua';
    } catch (e) {
      const text = serverErrorText(e);
      // FCALL_RO itself unknown (Redis < 7) or the library not loaded.
      const absent = text !== undefined && (text.startsWith('ERR unknown command') || text.startsWith('ERR Function not found'));
      if (!absent) {
        this.backendPromise = undefined;
        throw translateError(e, 'FCALL_RO quota_version');
      }
    }
    this.backendPromise = undefined;
    throw new NotLoaded('not_loaded', 'quota is not loaded on this server: load the module or run quota-load', 'detect');
  }

  /** The command as the backend takes it, and its label for errors. */
  private async wire(name: string, key: string | undefined, args: string[]): Promise<[string[], string]> {
    const backend = await this.backend();
    if (backend === 'module') {
      const command = `QUOTA.${name}`;
      return [key === undefined ? [command, ...args] : [command, key, ...args], command];
    }
    let fn = `quota_${name.toLowerCase()}`;
    const verb = args[0]?.toUpperCase();
    let readonly = READS.has(name);
    if ((name === 'PRICE' || name === 'PLAN') && (verb === 'GET' || verb === 'LIST' || verb === 'HELP')) {
      fn += '_ro';
      readonly = true;
    }
    const call = readonly ? 'FCALL_RO' : 'FCALL';
    const wire = key === undefined ? [call, fn, '0', ...args] : [call, fn, '1', key, ...args];
    return [wire, `${call} ${fn}`];
  }

  /**
   * Sends a command to the node serving the tree `key`. A keyless one goes to any node on
   * the module; on the Lua library to the node serving its book's key (`quota:prices`,
   * `quota:plans`, `quota:clock`: on a cluster each is one key in one slot).
   */
  private async raw(name: string, key: string | undefined, args: string[]): Promise<unknown> {
    const [wire, label] = await this.wire(name, key, args);
    const verb = args[0]?.toUpperCase();
    const readonly = READS.has(name) || ((name === 'PRICE' || name === 'PLAN') && verb !== 'SET' && verb !== 'DEL');
    const route = key ?? ((await this.backend()) === 'lua' ? LUA_BOOK_KEYS[name] : undefined);
    try {
      return await this.adapter.send(wire, route, readonly);
    } catch (e) {
      throw translateError(e, label);
    }
  }

  /**
   * A server-wide write. The module keeps the price book, the plan book and the test clock
   * per server: to every primary. The Lua library keeps each in one key: to the node serving it.
   */
  /**
   * When some primary fails, the others have applied the write already (nothing is undone):
   * the first failure is thrown (a QuotaError by kind, or the driver's error) once every
   * primary answered, carrying `primaries`: each node's `reply` or `error` (review20 F15).
   */
  private async everywhere(name: string, args: string[]): Promise<unknown[]> {
    if ((await this.backend()) === 'lua') return [await this.raw(name, undefined, args)];
    const [wire, label] = await this.wire(name, undefined, args);
    const results = await this.adapter.sendAll(wire);
    const primaries: PrimaryResult[] = results.map((r) =>
      'error' in r && r.error !== undefined ? { node: r.node, error: translateError(r.error, label) } : { node: r.node, reply: r.reply },
    );
    const failed = primaries.find((r) => r.error !== undefined);
    if (failed) {
      const err = failed.error;
      if (err !== null && typeof err === 'object') Object.assign(err, { primaries });
      throw err;
    }
    return primaries.map((r) => r.reply);
  }

  private async typed<T>(name: string, key: string | undefined, args: string[], schema: Schema): Promise<T> {
    return decode(await this.raw(name, key, args), schema, this.dec) as T;
  }

  private async text(name: string, key: string | undefined, args: string[]): Promise<string> {
    return decode(await this.raw(name, key, args), 'str', this.dec) as string;
  }

  private async integer(name: string, key: string | undefined, args: string[]): Promise<number> {
    return decode(await this.raw(name, key, args), 'int', this.dec) as number;
  }

  /**
   * Any command, as the backend takes it: `command('GRANT', 'acme', ['/', 'wallet', '5'])` is
   * `QUOTA.GRANT acme / wallet 5` or `FCALL quota_grant 1 acme / wallet 5`; `key` undefined for
   * the server-wide ones. The reply as the driver gave it (RESP3 maps as objects); errors by kind.
   * For commands this client does not know yet.
   */
  async command(name: string, key: string | undefined, args: string[]): Promise<unknown> {
    return decode(await this.raw(name.toUpperCase(), key, args), 'raw', this.dec);
  }

  // ----- policies, rules, labels -------------------------------------------------

  /** QUOTA.SET: creates or updates a policy. Replies 'OK'. */
  async set(tree: string, path: string, policy: string, o: SetOptions): Promise<string> {
    const args = [path, policy, 'METRIC', o.metric, 'LIMIT', amountText(o.limit)];
    if (o.window !== undefined) args.push('WINDOW', o.window);
    if (o.anchor !== undefined) args.push('ANCHOR', typeof o.anchor === 'string' ? o.anchor : int(o.anchor, 'anchor'));
    if (o.tz !== undefined) args.push('TZ', o.tz);
    if (o.mode !== undefined) args.push('MODE', o.mode);
    if (o.warn !== undefined) args.push('WARN', o.warn.map((w) => int(w, 'warn')).join(','));
    if (o.rollover !== undefined) args.push('ROLLOVER', amountText(o.rollover));
    args.push(...serviceArgs(o));
    if (o.low !== undefined) args.push('LOW', amountText(o.low));
    if (o.inflight) args.push('INFLIGHT');
    return this.text('SET', tree, args);
  }

  async unset(tree: string, path: string, policy: string): Promise<string> {
    return this.text('UNSET', tree, [path, policy]);
  }

  async delpath(tree: string, path: string): Promise<number> {
    return this.integer('DELPATH', tree, [path]);
  }

  async allow(tree: string, path: string, o: { service: string; model?: string; remove?: boolean }): Promise<number> {
    return this.integer('ALLOW', tree, [path, ...serviceArgs(o), ...(o.remove ? ['REMOVE'] : [])]);
  }

  async deny(tree: string, path: string, o: { service: string; model?: string; remove?: boolean }): Promise<number> {
    return this.integer('DENY', tree, [path, ...serviceArgs(o), ...(o.remove ? ['REMOVE'] : [])]);
  }

  /** QUOTA.ACCESS: the node's own rules; with `{clear: true}`, removes them and replies how many. */
  access(tree: string, path: string): Promise<R.AccessReply>;
  access(tree: string, path: string, o: { clear: true }): Promise<number>;
  async access(tree: string, path: string, o?: { clear?: boolean }): Promise<R.AccessReply | number> {
    if (o?.clear) return this.integer('ACCESS', tree, [path, 'CLEAR']);
    return this.typed('ACCESS', tree, [path], S.access);
  }

  async label(tree: string, path: string, o: { note?: string; tags?: string[] }): Promise<R.LabelReply> {
    const args = [path];
    if (o.note !== undefined) args.push('NOTE', o.note);
    if (o.tags !== undefined) args.push('TAGS', o.tags.join(','));
    return this.typed('LABEL', tree, args, S.label);
  }

  async archive(tree: string, path: string): Promise<number> {
    return this.integer('ARCHIVE', tree, [path]);
  }

  async restore(tree: string, path: string): Promise<number> {
    return this.integer('RESTORE', tree, [path]);
  }

  /** QUOTA.ASSIGN: follow a plan (null: none). Replies 'OK'. */
  async assign(tree: string, plan: string | null): Promise<string> {
    return this.text('ASSIGN', tree, [plan ?? 'NONE']);
  }

  // ----- spending ----------------------------------------------------------------

  /** QUOTA.RESERVE. A denial is a value (`allowed` 0): see assertAllowed(). */
  async reserve(tree: string, o: ReserveOptions): Promise<R.ReserveReply<A>> {
    const args = requestArgs(o);
    if (o.ttlMs !== undefined) args.push('TTL', int(o.ttlMs, 'ttlMs'));
    args.push(...serviceArgs(o), ...metaArgs(o.meta));
    if (o.mode !== undefined) args.push(o.mode.toUpperCase());
    if (o.brief) args.push('BRIEF');
    const items = [...(o.items ?? [])];
    if (o.cost !== undefined || o.usage !== undefined) items.unshift({ cost: o.cost, usage: o.usage } as Item);
    if (items.length === 0) throw new TypeError('quota: reserve needs cost, usage or items');
    for (const item of items) args.push(...itemArgs(item.cost, item.usage));
    return this.typed('RESERVE', tree, args, S.reserve);
  }

  async commit(tree: string, id: string, o: SettleOptions = {}): Promise<R.CommitReply<A>> {
    const args = [id];
    if (o.item !== undefined) args.push('ITEM', int(o.item, 'item'));
    args.push(...itemArgs(o.cost, o.usage));
    return this.typed('COMMIT', tree, args, S.commit);
  }

  async release(tree: string, id: string, o: { item?: number } = {}): Promise<R.ReleaseReply<A>> {
    const args = [id];
    if (o.item !== undefined) args.push('ITEM', int(o.item, 'item'));
    return this.typed('RELEASE', tree, args, S.release);
  }

  async extend(tree: string, id: string, ttlMs: number): Promise<R.ExtendReply> {
    return this.typed('EXTEND', tree, [id, int(ttlMs, 'ttlMs')], S.extend);
  }

  async charge(tree: string, o: ChargeOptions): Promise<R.ChargeReply<A>> {
    const args = [...requestArgs(o), ...serviceArgs(o), ...metaArgs(o.meta)];
    if (o.check) args.push('CHECK');
    if (o.brief) args.push('BRIEF');
    const item = itemArgs(o.cost, o.usage);
    if (item.length === 0) throw new TypeError('quota: charge needs cost or usage');
    args.push(...item);
    return this.typed('CHARGE', tree, args, S.charge);
  }

  // ----- reads -------------------------------------------------------------------

  async get(tree: string, path = '/'): Promise<R.NodeReply<A>> {
    return this.typed('GET', tree, [path], S.get);
  }

  async tree(tree: string, o: TreeOptions = {}): Promise<R.TreeNode<A>> {
    // A path written `archived` (any case) as the last argument is read as the ARCHIVED flag
    // (README QUOTA.TREE): written `/archived`, it is the node (review20 F1).
    const path = o.path ?? '/';
    const args = [path.toUpperCase() === 'ARCHIVED' ? `/${path}` : path];
    if (o.depth !== undefined) args.push('DEPTH', int(o.depth, 'depth'));
    if (o.count !== undefined) args.push('COUNT', int(o.count, 'count'));
    if (o.tag !== undefined) args.push('TAG', o.tag);
    if (o.after !== undefined) args.push('AFTER', o.after);
    if (o.archived) args.push('ARCHIVED');
    return this.typed('TREE', tree, args, S.tree);
  }

  async holds(tree: string, o: { path?: string; count?: number } = {}): Promise<R.Hold<A>[]> {
    const args = [o.path ?? '/'];
    if (o.count !== undefined) args.push('COUNT', int(o.count, 'count'));
    return this.typed('HOLDS', tree, args, S.holds);
  }

  async history(tree: string, path: string, policy: string): Promise<R.Period<A>[]> {
    return this.typed('HISTORY', tree, [path, policy], S.history);
  }

  async events(tree: string, o: { since?: number; count?: number } = {}): Promise<R.QuotaEvent<A>[]> {
    const args: string[] = [];
    if (o.since !== undefined) args.push('SINCE', int(o.since, 'since'));
    if (o.count !== undefined) args.push('COUNT', int(o.count, 'count'));
    return this.typed('EVENTS', tree, args, { list: S.event });
  }

  async usage(tree: string, path: string, o: UsageOptions = {}): Promise<R.UsageReply<A>> {
    const args = [path];
    if (o.since !== undefined) args.push('SINCE', int(o.since, 'since'));
    if (o.until !== undefined) args.push('UNTIL', int(o.until, 'until'));
    if (o.by !== undefined) args.push('BY', o.by);
    if (o.metric !== undefined) args.push('METRIC', o.metric);
    args.push(...serviceArgs(o));
    if (o.group !== undefined) args.push('GROUP', o.group);
    return this.typed('USAGE', tree, args, S.usage);
  }

  // ----- grants ------------------------------------------------------------------

  async grant(tree: string, path: string, policy: string, amount: AmountIn, o: GrantOptions = {}): Promise<R.GrantReply<A>> {
    const args = [path, policy, amountText(amount)];
    if (o.id !== undefined) args.push('ID', o.id);
    if (o.expiresAt !== undefined) args.push('EXPIRES', int(o.expiresAt, 'expiresAt'));
    if (o.for !== undefined) args.push('FOR', o.for);
    if (o.period) args.push('PERIOD');
    if (o.priority !== undefined) args.push('PRIORITY', int(o.priority, 'priority'));
    if (o.note !== undefined) args.push('NOTE', o.note);
    return this.typed('GRANT', tree, args, S.grant);
  }

  async grants(tree: string, path: string, policy: string, o: { count?: number } = {}): Promise<R.Grant<A>[]> {
    const args = [path, policy];
    if (o.count !== undefined) args.push('COUNT', int(o.count, 'count'));
    return this.typed('GRANTS', tree, args, S.grants);
  }

  async revoke(tree: string, path: string, policy: string, grantId: string): Promise<R.RevokeReply<A>> {
    return this.typed('REVOKE', tree, [path, policy, grantId], S.revoke);
  }

  async reset(tree: string, path: string, policy: string): Promise<R.Period<A>> {
    return this.typed('RESET', tree, [path, policy], S.reset);
  }

  // ----- the price book and the plan book: server-wide ---------------------------

  /** QUOTA.PRICE SET on every primary. `entry`: the JSON text or an object. */
  async priceSet(name: string, entry: string | object): Promise<string> {
    const json = typeof entry === 'string' ? entry : JSON.stringify(entry);
    const replies = await this.everywhere('PRICE', ['SET', name, json]);
    return decode(replies[0], 'str', this.dec) as string;
  }

  /** The entry as canonical JSON, parsed (decimals stay strings); NotFound when none. */
  async priceGet(name: string): Promise<Record<string, unknown>> {
    return decode(await this.raw('PRICE', undefined, ['GET', name]), 'json', this.dec) as Record<string, unknown>;
  }

  /** QUOTA.PRICE DEL on every primary: 1 when some primary had it. */
  async priceDel(name: string): Promise<number> {
    const replies = await this.everywhere('PRICE', ['DEL', name]);
    return Math.max(0, ...replies.map((r) => decode(r, 'int', this.dec) as number));
  }

  async priceList(): Promise<string[]> {
    return decode(await this.raw('PRICE', undefined, ['LIST']), 'strs', this.dec) as string[];
  }

  /**
   * QUOTA.PLAN SET on every primary; replies the plan's version, the highest of the primaries'
   * (they differ when an earlier set reached only some of them).
   */
  async planSet(name: string, plan: string | object): Promise<number> {
    const json = typeof plan === 'string' ? plan : JSON.stringify(plan);
    const replies = await this.everywhere('PLAN', ['SET', name, json]);
    return Math.max(...replies.map((r) => decode(r, 'int', this.dec) as number));
  }

  async planGet(name: string): Promise<Record<string, unknown>> {
    return decode(await this.raw('PLAN', undefined, ['GET', name]), 'json', this.dec) as Record<string, unknown>;
  }

  async planDel(name: string): Promise<number> {
    const replies = await this.everywhere('PLAN', ['DEL', name]);
    return Math.max(0, ...replies.map((r) => decode(r, 'int', this.dec) as number));
  }

  async planList(): Promise<string[]> {
    return decode(await this.raw('PLAN', undefined, ['LIST']), 'strs', this.dec) as string[];
  }

  /** QUOTA.ESTIMATE price name value…: `values` as `{ input_tokens: 1000, quality: 'hd' }`. */
  async estimate(price: string, values: AmountMap): Promise<R.EstimateReply<A>> {
    const args = [price];
    for (const [n, v] of entries(values)) args.push(n, amountText(v));
    return this.typed('ESTIMATE', undefined, args, S.estimate);
  }

  // ----- the test clock: server-wide ---------------------------------------------

  async clockSet(ms: number): Promise<number> {
    const replies = await this.everywhere('DEBUG', ['CLOCK', 'SET', int(ms, 'ms')]);
    return decode(replies[0], 'int', this.dec) as number;
  }

  async clockAdvance(ms: number): Promise<number> {
    const replies = await this.everywhere('DEBUG', ['CLOCK', 'ADVANCE', int(ms, 'ms')]);
    return decode(replies[0], 'int', this.dec) as number;
  }

  async clockGet(): Promise<number> {
    return this.integer('DEBUG', undefined, ['CLOCK', 'GET']);
  }

  /** The Lua library's version; null on the module. */
  async version(): Promise<string | null> {
    if ((await this.backend()) === 'module') return null;
    return this.text('VERSION', undefined, []);
  }

  // ----- helpers -----------------------------------------------------------------

  /**
   * Reserves (Denied when refused), runs `fn`, then commits (the actual cost or usage if
   * `fn` set one with `h.actual`, else what was reserved); releases when `fn` throws, and
   * re-throws. The commit's reply is `h.commit` afterwards; a commit that came after the
   * hold expired (`expired` 1: charged without the hold, all of it overage) also emits a
   * process warning (code `QUOTA_HOLD_EXPIRED`).
   *
   * With an `id` that repeats an earlier reservation (`duplicate` 1): when that hold is still
   * live (a retry after a crash) the body runs and commits it; when it was already committed,
   * released or expired, the body does NOT run: Conflict (the work was done, or the hold is
   * gone: a retry must not generate again for free).
   */
  async withHold<T>(tree: string, o: Omit<ReserveOptions, 'mode'>, fn: (h: HoldHandle<A>) => Promise<T>): Promise<T> {
    const command = (await this.backend()) === 'module' ? 'QUOTA.RESERVE' : 'FCALL quota_reserve';
    const reply = await this.reserve(tree, o);
    assertAllowed(reply, command);
    const id = reply.id as string;
    if (reply.duplicate === 1 && !(await this.holdIsLive(tree, o.path, id, reply.expires_at))) {
      throw new Conflict(
        'conflict',
        `reservation '${id}' is no longer held (committed, released or expired): withHold does not run the body again`,
        command,
      );
    }
    let settle: { cost?: AmountMap; usage?: UsageIn } = {};
    let committed: R.CommitReply<A> | undefined;
    const handle: HoldHandle<A> = {
      id,
      reply,
      get commit() {
        return committed;
      },
      actual: (s) => {
        itemArgs(s.cost, s.usage); // validates now, where the mistake is
        settle = s;
      },
    };
    let result: T;
    try {
      result = await fn(handle);
    } catch (e) {
      try {
        await this.release(tree, id);
      } catch {
        // the body's error is the one to see; the hold expires at its TTL
      }
      throw e;
    }
    committed = await this.commit(tree, id, settle);
    if (committed.expired === 1) {
      process.emitWarning(
        `quota: the hold '${id}' on ${tree} expired before withHold committed it: charged without the hold (overage ${JSON.stringify(committed.overage)}); raise ttlMs or extend the hold`,
        { code: 'QUOTA_HOLD_EXPIRED' },
      );
    }
    return result;
  }

  /**
   * Whether the reservation `id` (PATH `path`) still holds: QUOTA.HOLDS lists the live holds
   * at or below the path, soonest expiry first. When the page is full before reaching this
   * hold's expiry it cannot tell, and says live (the body runs, as before).
   */
  private async holdIsLive(tree: string, path: string, id: string, expiresAt: number): Promise<boolean> {
    const count = 10000;
    const holds = await this.holds(tree, { path, count });
    if (holds.some((h) => h.id === id)) return true;
    return holds.length === count && holds[holds.length - 1]!.expires_at <= expiresAt;
  }

  /**
   * The Generate All flow: preview (DRYRUN); if every item fits, reserve ALL; else ask
   * `choose(preview)` and reserve UPTO (the leading items that fit) or stop. With an ID
   * (given, or made), so a retried call returns the same hold. When the ALL reservation is
   * refused after all (another request took the room between the preview and it), its reply
   * is the new preview: `choose` is asked with it (review20 F11), never a silent `all`.
   */
  async generateAll(tree: string, o: GenerateAllOptions<A>): Promise<Batch<A>> {
    const { choose, ...rest } = o;
    const id = o.id ?? `batch-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    // The preview carries the ID: a DRYRUN is never remembered under it, but when a
    // reservation with that ID exists (a retried call), the server replies that one.
    const preview = await this.reserve(tree, { ...rest, id, items: [...o.items], mode: 'dryrun' });
    let reservation: R.ReserveReply<A> | null = null;
    let choice: 'all' | 'first' | 'stop' = 'stop';
    let offer = preview; // what choose() is shown: the preview, or a refused ALL
    if (preview.duplicate === 1) {
      reservation = preview;
      choice = preview.reserved === preview.items ? 'all' : 'first';
    } else {
      if (preview.fits === preview.items) {
        const all = await this.reserve(tree, { ...rest, id, items: [...o.items], mode: 'all' });
        if (all.allowed) {
          reservation = all;
          choice = 'all';
        } else {
          offer = all; // its fits and message say what fits now
        }
      }
      if (reservation === null && offer.fits > 0 && (await choose(offer)) === 'first') {
        reservation = await this.reserve(tree, { ...rest, id, items: [...o.items], mode: 'upto' });
        choice = reservation.allowed ? 'first' : 'stop';
      } else if (reservation === null && offer !== preview && offer.fits === 0) {
        reservation = offer; // the refused ALL: nothing fits any more (allowed 0)
      }
    }
    const reserved = reservation && reservation.allowed ? reservation.reserved : 0;
    const batchId = reservation?.id ?? id;
    return {
      id: batchId,
      preview,
      reservation,
      reserved,
      choice,
      commit: (item, settle = {}) => this.commit(tree, batchId, { item, ...settle }),
      release: (item) => this.release(tree, batchId, { item }),
      extend: (ttlMs) => this.extend(tree, batchId, ttlMs),
    };
  }

  /**
   * The tree's events in seq order, live, without losing any: subscribes first (on a
   * connection of its own), then catches up with EVENTS SINCE (page by page), skips live
   * events already handled, and catches up again after a reconnect or a hole. A log that
   * wrapped while away is reported to `onGap`. End it with `break` (or `return()`).
   */
  follow(tree: string, o: FollowOptions = {}): AsyncIterableIterator<R.QuotaEvent<A>> {
    return new EventFollower(this, tree, o);
  }

  /** @internal: a live event's JSON as the log's event. */
  decodeEvent(json: string): R.QuotaEvent<A> {
    const parsed = JSON.parse(json) as Record<string, unknown>;
    delete parsed.tree; // on the channel only: QUOTA.EVENTS names the tree already
    return decode(parsed, S.event, this.dec) as R.QuotaEvent<A>;
  }

  /** @internal */
  subscribeRaw(channel: string, onMessage: (m: string) => void, onReconnect: () => void) {
    return this.adapter.subscribe(channel, onMessage, onReconnect);
  }
}

/** Throws Denied (carrying the reply) when `reply.allowed` is 0. */
export function assertAllowed<T extends { allowed: number; message?: string }>(reply: T, command = 'QUOTA.RESERVE'): T {
  if (!reply.allowed) throw new Denied(reply as T & { allowed: number }, command);
  return reply;
}

/** How many delivered events a follower remembers, to tell a late duplicate from a new log. */
const REMEMBERED = 1000;

/** What tells two events with the same seq apart (fields the live JSON and the log share). */
function fingerprint(e: R.QuotaEvent<unknown>): string {
  const f = (x: unknown) => (x === undefined || x === null ? '' : String(x));
  return [e.type, e.time, e.path, e.policy, e.metric, e.used, e.held, e.limit, e.threshold, e.id, e.grant, e.amount, e.remaining]
    .map(f)
    .join('\u0000');
}

class EventFollower<A> implements AsyncIterableIterator<R.QuotaEvent<A>> {
  private last: number;
  private readonly ready: R.QuotaEvent<A>[] = [];
  /** seq -> fingerprint of the events handed out lately. */
  private readonly seen = new Map<number, string>();
  private waiter: (() => void) | undefined;
  private failure: unknown;
  private sub: Promise<{ close(): Promise<void> }> | undefined;
  private chain: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly q: Quota<A>,
    private readonly tree: string,
    private readonly o: FollowOptions,
  ) {
    const since = o.since;
    if (typeof since === 'object' && since !== null) {
      this.last = since.seq;
      this.seen.set(since.seq, fingerprint(since));
    } else {
      this.last = since ?? 0;
    }
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<R.QuotaEvent<A>> {
    return this;
  }

  /** Runs one step at a time, in order: catch-ups and live events never interleave. */
  private serial(step: () => Promise<void>): void {
    this.chain = this.chain.then(step).catch((e) => {
      this.failure ??= e;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** Hands an event out unless its seq was handled already. */
  private accept(e: R.QuotaEvent<A>): void {
    if (e.seq <= this.last) return; // seen already
    this.last = e.seq;
    this.seen.set(e.seq, fingerprint(e));
    if (this.seen.size > REMEMBERED) this.seen.delete(this.seen.keys().next().value as number);
    this.ready.push(e);
    this.wake();
  }

  /** A live event. */
  private async live(e: R.QuotaEvent<A>): Promise<void> {
    if (e.seq <= this.last) {
      // A late duplicate of what a catch-up handed out, or the first events of a new log
      // (the tree was deleted and created again: its seq starts at 1 again). Known and the
      // same: a duplicate; known and different: a new log. Otherwise the log decides
      // (catchUp checks it still has `last`).
      const known = this.seen.get(e.seq);
      if (known === fingerprint(e)) return;
      if (known !== undefined) await this.restart(); // another event at a seq handed out
      else await this.catchUp();
    } else if (e.seq > this.last + 1) {
      await this.catchUp(); // a hole: the log has it
    }
    this.accept(e);
  }

  /**
   * EVENTS SINCE last, page by page. The first page starts one event early: the log must
   * still have `last` (the event handed out), or have wrapped past it (a gap). A log whose
   * newest seq is below `last`, or whose event `last` is not the one handed out, restarted:
   * the tree was deleted (review20 F2). Then onGap hears `reset` 1 and the new log is handed
   * out from its start.
   */
  private async catchUp(): Promise<void> {
    const count = this.o.pageSize ?? 100;
    let first = true;
    if (this.last > 0) {
      const page = await this.q.events(this.tree, { since: this.last - 1, count });
      const head = page[0];
      const known = this.seen.get(this.last);
      if (head === undefined || (head.seq === this.last && known !== undefined && known !== fingerprint(head))) {
        return this.restart();
      }
      if (head.seq > this.last + 1) this.o.onGap?.({ after: this.last, next: head.seq, reset: 0 });
      for (const e of page) this.accept(e);
      if (page.length < count) return;
      first = false;
    }
    for (;;) {
      const page = await this.q.events(this.tree, { since: this.last, count });
      if (first && page.length > 0 && page[0]!.seq > this.last + 1) {
        this.o.onGap?.({ after: this.last, next: page[0]!.seq, reset: 0 });
      }
      first = false;
      for (const e of page) this.accept(e);
      if (page.length < count) return;
    }
  }

  /** The log restarted: reported, then the new log from its start. */
  private async restart(): Promise<void> {
    const count = this.o.pageSize ?? 100;
    const after = this.last;
    this.last = 0;
    this.seen.clear();
    let page = await this.q.events(this.tree, { since: 0, count });
    this.o.onGap?.({ after, next: page[0]?.seq ?? 1, reset: 1 });
    for (;;) {
      for (const e of page) this.accept(e);
      if (page.length < count) return;
      page = await this.q.events(this.tree, { since: this.last, count });
    }
  }

  private start(): Promise<{ close(): Promise<void> }> {
    const channel = `quota:events:${this.tree}`;
    const sub = this.q.subscribeRaw(
      channel,
      (message) => {
        let event: R.QuotaEvent<A>;
        try {
          event = this.q.decodeEvent(message);
        } catch (e) {
          this.failure ??= e;
          this.wake();
          return;
        }
        this.serial(() => this.live(event));
      },
      () => this.serial(() => this.catchUp()),
    );
    // Subscribed first, then the catch-up: nothing published in between is lost.
    sub.then(
      () => this.serial(() => this.catchUp()),
      (e) => {
        this.failure ??= e;
        this.wake();
      },
    );
    return sub;
  }

  async next(): Promise<IteratorResult<R.QuotaEvent<A>>> {
    this.sub ??= this.start();
    for (;;) {
      if (this.closed) return { done: true, value: undefined };
      const e = this.ready.shift();
      if (e) return { done: false, value: e };
      if (this.failure) {
        const f = this.failure;
        await this.return();
        throw f;
      }
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
  }

  async return(): Promise<IteratorResult<R.QuotaEvent<A>>> {
    if (!this.closed) {
      this.closed = true;
      this.wake();
      const sub = this.sub;
      if (sub) await sub.then((s) => s.close(), () => undefined);
    }
    return { done: true, value: undefined };
  }
}


