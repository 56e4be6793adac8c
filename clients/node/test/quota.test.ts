/**
 * The client on both backends (module, Lua) over ioredis (RESP2) and node-redis (RESP2, RESP3),
 * against real servers started here.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  ArityError, Conflict, Denied, InvalidAmount, LimitExceeded, NotFound, NotLoaded, PermissionDenied, Quota,
  QuotaError, QuotaEvent, QuotaSyntaxError, UnknownMetric, WrongType, EvictionRefused, LayoutError, assertAllowed,
} from '../src';
import { translateError } from '../src/errors';
import { DRIVERS } from './clients';
import { everyCommand, extras, T0 } from './scenario';
import { Backend, cli, Server, startServer } from './servers';

let treeCount = 0;
const fresh = (what: string) => `t${++treeCount}-${what}-${process.pid}`;

async function take<T>(it: AsyncIterator<T>, n: number): Promise<T[]> {
  const out: T[] = [];
  while (out.length < n) {
    const r = await it.next();
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

/** A decimal type of the caller's (what decimal.js or big.js would be). */
class Dec {
  constructor(readonly text: string) {}
  toString() {
    return this.text;
  }
}

for (const backend of ['module', 'lua'] as Backend[]) {
  describe(`${backend} backend`, () => {
    let server: Server;
    let small: Server;
    before(async () => {
      server = await startServer(backend);
      small = await startServer(backend, { events_len: 5 });
    });
    after(async () => {
      await server?.stop();
      await small?.stop();
    });

    it('every command once: typed replies, identical on ioredis RESP2, node-redis 6 RESP2 and RESP3, node-redis 5', async () => {
      const results: Array<Record<string, unknown>> = [];
      for (const d of DRIVERS) {
        const conn = await d.open(server.port);
        try {
          const q = new Quota(conn.client);
          assert.equal(await q.backend(), backend);
          results.push(await everyCommand(q, fresh(`every-${d.name.replace(/\W+/g, '')}`)));
        } finally {
          await conn.close();
        }
      }
      const r = results[0] as Record<string, any>;
      assert.deepEqual(extras(r), [], 'every field is in a schema');
      assert.equal(r.set, 'OK');
      assert.equal(r.clockSet, T0);
      assert.equal(r.priceSet, 'OK');
      assert.deepEqual(r.priceGet.rates, { images: '4' });
      assert.equal(r.estimateMultiplied.cost, '24');
      assert.equal(r.estimateMultiplied.minimum, null);
      assert.deepEqual(r.estimateMultiplied.multipliers, [{ attribute: 'quality', value: 'hd', factor: '2' }]);
      assert.equal(r.estimateMinimum.minimum, '0.0001');
      assert.deepEqual(r.estimateMinimum.multipliers, []);
      assert.deepEqual(r.estimateMinimum.charges, { credits: '0.0001', input_tokens: '1' });
      assert.deepEqual(r.getNew.spent, {});
      assert.equal(r.getNew.policies[0].limit, '50');
      assert.deepEqual(r.getNew.policies[0].warn, [50]);
      assert.deepEqual(r.getBare.policies, []);
      assert.deepEqual(r.label, { path: 'members/u7', note: 'seat', tags: ['a', 'b'] });
      assert.deepEqual(r.labelCleared, { path: 'members', note: null, tags: [] });
      assert.equal(r.allow, 1);
      assert.deepEqual(r.access, { path: 'members', allow: [{ service: 'chat' }], deny: [{ service: 'chat', model: 'gpt-bad' }] });
      assert.deepEqual(r.accessEmpty, { path: '/', allow: [], deny: [] });
      assert.equal(r.reserve.allowed, 1);
      assert.equal(r.reserve.id, 'r1');
      assert.equal(r.reserve.expires_at, T0 + 60_000);
      assert.deepEqual(r.reserve.cost, { credits: '10' });
      assert.deepEqual(r.reserve.held, { credits: '10' });
      assert.deepEqual(r.reserve.denied_by, []);
      assert.equal(r.reserve.checks.length, 2);
      assert.equal(r.reserve.checks[0].period_start > 0, true);
      assert.equal(r.reserveRepeat.duplicate, 1);
      assert.equal(r.reserveDenied.allowed, 0);
      assert.equal(r.reserveDenied.id, null);
      assert.equal(r.reserveDenied.fits, 1);
      assert.deepEqual(r.reserveDenied.held, {});
      assert.deepEqual(r.reserveDenied.denied_by, ['/#monthly', 'members/u7#cap']);
      assert.deepEqual(r.reserveRefusedByRules.denied_by, ['members#access']);
      assert.equal(r.reserveRefusedByRules.checks[0].rule, 'allow');
      assert.equal(r.reserveBrief.checks, undefined);
      assert.equal(r.reserveBrief.reserved, 2);
      assert.deepEqual(r.holds[0].meta, { user: 'u7', feature: 'x' });
      // The module keeps META in the order given; the Lua library's maps come in Lua's order.
      if (backend === 'module') assert.deepEqual(Object.keys(r.holds[0].meta), ['user', 'feature']);
      assert.deepEqual(r.holds[0].paths, ['members/u7']);
      assert.deepEqual(r.holdsNone, []);
      assert.deepEqual(r.extend, { id: 'r1', expires_at: T0 + 30_000 });
      assert.deepEqual(r.commit, {
        id: 'r1', charged: { credits: '12' }, released: { credits: '0' }, overage: { credits: '2' },
        duplicate: 0, expired: 0, over: [], drawn: [],
      });
      assert.deepEqual(r.releaseItem.released, { credits: '1' });
      assert.deepEqual(r.release.released, { credits: '2' });
      assert.equal(r.grant.grant.id, 'g1');
      assert.equal(r.grant.limit, '120');
      assert.equal(r.grant.base_limit, '100');
      assert.equal(r.grant.duplicate, 0);
      assert.equal(r.grants[0].note, 'promo');
      assert.deepEqual(r.grantsNone, []);
      assert.deepEqual(r.chargeOver.over, ['members/u7#cap']);
      assert.deepEqual(r.chargeDrawn.drawn, [{ path: '/', policy: 'monthly', grant: 'g1', amount: '12' }]);
      assert.equal(r.chargeAgainstRules.allowed, 1);
      assert.deepEqual(r.chargeAgainstRules.denied_by, ['members#access', 'members/u7#cap']);
      assert.deepEqual(r.chargeAgainstRules.checks.map((c: any) => c.kind), ['access', 'policy', 'policy']);
      assert.equal(r.chargeRefused.allowed, 0);
      assert.deepEqual(r.chargeRefused.charged, {});
      assert.deepEqual(r.revoke, { id: 'g1', removed: '7' });
      assert.deepEqual(r.historyNone, []);
      assert.equal(r.reset.used, '53');
      assert.equal(r.history.length, 1);
      assert.deepEqual(r.get.spent, { credits: '113' });
      assert.equal(r.getLabelled.note, 'seat');
      assert.deepEqual(r.getLabelled.tags, ['a', 'b']);
      assert.equal(r.get.access, undefined);
      assert.equal(r.tree.nodes, 3);
      assert.equal(r.tree.children[0].path, 'members');
      assert.deepEqual(r.tree.children[0].access.allow, [{ service: 'chat' }]);
      assert.deepEqual(r.treeTop.children, []);
      assert.equal(r.usage.buckets.length, 4);
      assert.deepEqual(r.usage.buckets[0].spent, {});
      assert.deepEqual(r.usage.total, { credits: '113' });
      assert.deepEqual(r.usage.groups.map((g: any) => g.name), ['(no service)', 'chat', 'video']);
      assert.deepEqual(r.usageChildren.groups, [{ name: 'members', spent: { credits: '53' } }]);
      assert.deepEqual(r.events.map((e: QuotaEvent) => e.type), [
        'warning', 'over', 'warning', 'warning', 'disallowed', 'over', 'low', 'reset',
      ]);
      assert.deepEqual(r.events[4].amounts, { credits: '1' });
      assert.equal(r.events[4].rule, 'allow');
      assert.deepEqual(r.eventsNone, []);
      assert.equal(typeof r.planSet, 'number');
      assert.equal(r.planGet.version, r.planSet);
      assert.deepEqual(r.planList, ['eqplan']);
      assert.equal(r.planDel, 1);
      assert.equal(r.planDelMissing, 0);
      assert.deepEqual(r.priceList, ['eq/gone', 'img/pix']);
      assert.equal(r.priceDel, 1);
      assert.equal(r.deny, 1);
      assert.equal(r.getPlanned.plan, 'eqplan');
      assert.equal(r.getPlanned.policies[0].source, 'plan');
      assert.equal(r.assignNone, 'OK');
      assert.equal(r.archive, 1);
      assert.deepEqual(r.reserveArchived.denied_by, ['members/u7#archived']);
      assert.equal(r.restore, 1);
      assert.equal(r.unset, 'OK');
      assert.equal(r.delpath, 1);
      assert.equal(r.accessClear, 2);
      if (backend === 'module') assert.equal(r.version, null);
      else assert.match(r.version as string, /^\d+\.\d+\.\d+$/);
      assert.equal(r.clockGet, T0);
      assert.equal(r.clockAdvance, T0 + 1000);
      // RESP2 and RESP3, ioredis and node-redis: the same values.
      for (let i = 1; i < DRIVERS.length; i++) {
        assert.deepEqual(results[i], results[0], `${DRIVERS[i]!.name} = ${DRIVERS[0]!.name}`);
      }
    });

    // Needs a server with TZ (issue 21).
    it('set() sends TZ and a text ANCHOR; policies show anchor, tz and tzdata; history entries a label', async () => {
      for (const d of DRIVERS) {
        const conn = await d.open(server.port);
        try {
          const q = new Quota(conn.client);
          const t = fresh(`tz-${d.name.replace(/\W+/g, '')}`);
          const set = (name: string, o: object) => q.set(t, '/', name, { metric: 'credits', limit: '10', ...o });
          assert.equal(await set('w', { window: 'week', anchor: 'SUN', tz: '+05:30' }), 'OK');
          assert.equal(await set('y', { window: 'year', anchor: '04-01' }), 'OK');
          assert.equal(await set('m', { window: 'month', anchor: 31, tz: 'america/new_york' }), 'OK');
          assert.equal(await set('d', { window: 'day' }), 'OK');
          const node = await q.get(t);
          const p = (name: string) => node.policies.find((x) => x.policy === name)!;
          assert.deepEqual([p('w').anchor, p('w').tz, p('w').tzdata], ['sunday', '+05:30', undefined]);
          assert.deepEqual([p('y').anchor, p('y').tz, p('y').tzdata], ['04-01', undefined, undefined]);
          assert.deepEqual([p('m').anchor, p('m').tz], [31, 'America/New_York']);
          assert.match(p('m').tzdata!, /^\d{4}[a-z]$/);
          assert.deepEqual([p('d').anchor, p('d').tz, p('d').tzdata], [undefined, undefined, undefined]);
          for (const x of node.policies) assert.equal(x.extra, undefined, `${x.policy}: every field in a schema`);
          await q.charge(t, { path: '/', cost: { credits: '1' } });
          const closed = await q.reset(t, '/', 'd');
          assert.match(closed.label!, /^\d{4}-\d\d-\d\d$/);
          assert.deepEqual((await q.history(t, '/', 'd')).map((h) => h.label), [closed.label]);
        } finally {
          await conn.close();
        }
      }
    });

    it('a server without quota: NotLoaded; forced backend skips detection', async () => {
      const plain = await startServer('lua', {}).catch(() => undefined);
      assert.ok(plain);
      try {
        await cli(plain.port, 'FUNCTION', 'DELETE', 'quota');
        for (const d of DRIVERS) {
          const conn = await d.open(plain.port);
          try {
            const q = new Quota(conn.client);
            await assert.rejects(q.get('x'), (e: unknown) => {
              assert.ok(e instanceof NotLoaded);
              assert.equal(e.kind, 'not_loaded');
              assert.match(e.message, /quota is not loaded on this server: load the module or run quota-load/);
              return true;
            });
            const forced = new Quota(conn.client, { backend: 'module' });
            await assert.rejects(forced.get('x'), NotLoaded);
          } finally {
            await conn.close();
          }
        }
      } finally {
        await plain.stop();
      }
    });

    for (const d of DRIVERS) {
      describe(d.name, () => {
        let conn: Awaited<ReturnType<typeof d.open>>;
        let q: Quota;
        before(async () => {
          conn = await d.open(server.port);
          q = new Quota(conn.client);
        });
        after(async () => conn?.close());

        it('amounts: strings, bigint, safe integers, decimal objects, 10 decimals round trip', async () => {
          const t = fresh('amounts');
          await q.set(t, '/', 'b', { metric: 'credits', limit: 10n ** 15n });
          assert.equal((await q.get(t)).policies[0]!.limit, '1000000000000000');
          const c = await q.charge(t, { path: '/', cost: { credits: '0.0000000001' } });
          assert.deepEqual(c.charged, { credits: '0.0000000001' });
          await q.charge(t, { path: '/', cost: { credits: new Dec('123456789.1234567891') } });
          await q.charge(t, { path: '/', cost: { credits: 7 } });
          assert.deepEqual((await q.get(t)).spent, { credits: '123456796.1234567892' });
          // A decimal factory builds the caller's type from the exact text.
          const qd = new Quota(conn.client, { decimal: (s) => new Dec(s) });
          const got = await qd.get(t);
          assert.ok(got.spent.credits instanceof Dec);
          assert.equal(got.spent.credits.text, '123456796.1234567892');
          assert.equal(got.policies[0]!.used.text, '123456796.1234567892');
          // Inexact numbers never leave the client.
          const before = await q.get(t);
          await assert.rejects(q.charge(t, { path: '/', cost: { credits: 0.1 + 0.2 } }), (e: unknown) => {
            assert.ok(e instanceof TypeError);
            assert.match(e.message, /^amounts are exact: pass a string, bigint, safe integer or decimal object, not the number 0.30000000000000004$/);
            return true;
          });
          await assert.rejects(q.charge(t, { path: '/', cost: { credits: 2 ** 60 } }), TypeError);
          await assert.rejects(q.set(t, '/', 'b', { metric: 'credits', limit: 1.5 }), TypeError);
          await assert.rejects(q.estimate('chat/gpt', { input_tokens: 0.5 }), TypeError);
          // review20 F6: an exponent is written out exactly (decode.test); text that is no decimal is refused.
          await assert.rejects(q.grant(t, '/', 'b', { toString: () => 'Infinity' }), TypeError);
          await assert.rejects(q.grant(t, '/', 'b', { toString: () => '1e-7x' }), TypeError);
          await assert.rejects(q.withHold(t, { path: '/', cost: { credits: 0.5 } }, async () => 1), TypeError);
          assert.deepEqual(await q.get(t), before);
          await assert.rejects(q.charge(t, { path: '/', cost: { credits: '0.00000000001' } }), InvalidAmount);
        });

        it('errors by kind, with the server text and the command', async () => {
          const t = fresh('errors');
          await q.set(t, '/', 'b', { metric: 'credits', limit: 10 });
          const kinds: Array<[() => Promise<unknown>, new (...a: any[]) => QuotaError, string]> = [
            [() => q.command('GRANT', t, ['/', 'b']), ArityError, 'arity'],
            [() => q.set(t, '/', 'b', { metric: 'credits', limit: 1, window: 'fortnight' }), QuotaSyntaxError, 'syntax'],
            [() => q.command('PRICE', undefined, ['FOO']), QuotaSyntaxError, 'syntax'],
            [() => q.set(t, '/', 'b', { metric: 'credits', limit: 'x' }), InvalidAmount, 'invalid_amount'],
            [() => q.set(t, '/', 'b', { metric: 'BAD', limit: 1 }), UnknownMetric, 'unknown_metric'],
            [() => q.reserve(t, { path: Array(17).fill('a').join('/'), cost: { credits: 1 } }), LimitExceeded, 'limit'],
            [() => q.get(t, 'nope'), NotFound, 'not_found'],
            [() => q.priceGet('no/such'), NotFound, 'not_found'],
            [() => q.commit(t, 'nope'), NotFound, 'not_found'],
            [() => q.delpath(t, '/'), Conflict, 'conflict'],
          ];
          for (const [p, ctor, kind] of kinds) {
            await assert.rejects(p(), (e: unknown) => {
              assert.ok(e instanceof ctor, `${kind}: ${String(e)}`);
              assert.ok(e instanceof QuotaError);
              assert.equal(e.kind, kind);
              assert.ok(e.command === (backend === 'module' ? e.command.match(/^QUOTA\.\w+$/)?.[0] : e.command.match(/^FCALL(_RO)? quota_\w+$/)?.[0]), e.command);
              return true;
            });
          }
          const r = await q.reserve(t, { path: '/', cost: { credits: 1 } });
          await q.commit(t, r.id!);
          await assert.rejects(q.release(t, r.id!), (e: unknown) => {
            assert.ok(e instanceof Conflict);
            assert.match(e.message, /^ERR reservation '.*' was committed; nothing to release$/);
            assert.equal(e.command, backend === 'module' ? 'QUOTA.RELEASE' : 'FCALL quota_release');
            return true;
          });
          await cli(server.port, 'SET', `${t}:str`, 'x');
          await assert.rejects(q.get(`${t}:str`), WrongType);
          // A user who may touch only its own keys.
          await cli(server.port, 'ACL', 'SETUSER', 'own', 'on', 'nopass', '~own*', '+@all');
          const own = await d.open(server.port);
          try {
            const qo = new Quota(own.client, { backend });
            await (own.client as any).call?.('AUTH', 'own', 'x');
            if (!(own.client as any).call) await (own.client as any).sendCommand(['AUTH', 'own', 'x']);
            await assert.rejects(qo.get(t), PermissionDenied);
            if (backend === 'module') {
              // Detection when the account may not read the price book.
              await cli(server.port, 'ACL', 'SETUSER', 'own', '-quota.price');
              assert.equal(await new Quota(own.client).backend(), 'module');
              await cli(server.port, 'ACL', 'SETUSER', 'own', '+quota.price');
            }
          } finally {
            await own.close();
          }
          // Eviction refused under allkeys-* (the module; the Lua library cannot read CONFIG:
          // quota-load refuses instead), and the translation of the kinds not reachable here.
          if (backend === 'module') {
            await cli(server.port, 'CONFIG', 'SET', 'maxmemory-policy', 'allkeys-lru');
            try {
              await assert.rejects(q.set(t, '/', 'b', { metric: 'credits', limit: 10 }), EvictionRefused);
            } finally {
              await cli(server.port, 'CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
            }
          }
          const evicting = Object.assign(Object.create((class ReplyError extends Error {}).prototype), {
            message: 'ERR eviction: maxmemory-policy is allkeys-lru',
          });
          assert.ok(translateError(evicting, 'QUOTA.SET') instanceof EvictionRefused);
          const reply = Object.assign(Object.create((class ReplyError extends Error {}).prototype), {
            message: 'ERR layout 3 is newer than this library',
          });
          assert.ok(translateError(reply, 'FCALL quota_get') instanceof LayoutError);
          // Driver errors pass through unchanged.
          const plain = new Error('connection lost');
          assert.equal(translateError(plain, 'QUOTA.GET'), plain);
        });

        it('withHold: commits what was reserved, the actual cost or usage, releases on a throw, Denied', async () => {
          const t = fresh('hold');
          await q.set(t, '/', 'b', { metric: 'credits', limit: 100 });
          const used = async () => (await q.get(t)).policies[0]!.used;
          // Success: commits what was reserved.
          const id = await q.withHold(t, { path: 'a', cost: { credits: 10 } }, async (h) => {
            assert.equal(h.reply.allowed, 1);
            assert.deepEqual((await q.holds(t)).map((x) => x.id), [h.id]);
            return h.id;
          });
          assert.equal(typeof id, 'string');
          assert.equal(await used(), '10');
          assert.deepEqual(await q.holds(t), []);
          // The actual cost, set by the body.
          await q.withHold(t, { path: 'a', cost: { credits: 20 } }, async (h) => h.actual({ cost: { credits: '3.5' } }));
          assert.equal(await used(), '13.5');
          // The actual usage, priced by the price book.
          await q.priceSet('chat/hold', { metric: 'credits', rates: { output_tokens: '1' } });
          await q.withHold(t, { path: 'a', usage: { 'chat/hold': { output_tokens: 8 } } }, async (h) =>
            h.actual({ usage: { 'chat/hold': { output_tokens: 2 } } }),
          );
          assert.equal(await used(), '15.5');
          // A throw releases and is re-thrown.
          const boom = new Error('generation failed');
          await assert.rejects(
            q.withHold(t, { path: 'a', cost: { credits: 30 } }, async () => {
              assert.equal((await q.holds(t)).length, 1);
              throw boom;
            }),
            (e) => e === boom,
          );
          assert.deepEqual(await q.holds(t), []);
          assert.equal(await used(), '15.5');
          // Refused: Denied, with the reply; the body never runs.
          let ran = false;
          await assert.rejects(
            q.withHold(t, { path: 'a', cost: { credits: 1000 } }, async () => {
              ran = true;
            }),
            (e: unknown) => {
              assert.ok(e instanceof Denied && e instanceof QuotaError);
              assert.equal(e.kind, 'denied');
              assert.deepEqual(e.denied_by, ['/#b']);
              assert.equal(e.reply.allowed, 0);
              assert.equal(e.command, backend === 'module' ? 'QUOTA.RESERVE' : 'FCALL quota_reserve');
              assert.match(e.message, /^not enough credits: 84.5 available at \/, 1000 needed$/);
              return true;
            },
          );
          assert.equal(ran, false);
          const denial = await q.reserve(t, { path: 'a', cost: { credits: 1000 } });
          assert.throws(() => assertAllowed(denial), Denied);
        });

        it('generateAll: all fit, first, stop, and a retry is harmless', async () => {
          const t = fresh('genall');
          await q.set(t, '/', 'budget', { metric: 'credits', limit: 95, window: 'month' });
          const items = Array.from({ length: 10 }, () => ({ cost: { credits: 18 } }));
          // Not all fit: stop.
          let asked = 0;
          const stopped = await q.generateAll(t, {
            path: 'u', items, choose: (p) => {
              asked++;
              assert.equal(p.fits, 5);
              assert.match(p.message, /^enough credits for 5 of 10 items: 95 available at \/, 180 needed$/);
              return 'stop';
            },
          });
          assert.equal(asked, 1);
          assert.equal(stopped.reservation, null);
          assert.equal(stopped.reserved, 0);
          assert.deepEqual(await q.holds(t), []);
          // Not all fit: the first five, with an ID; a retry returns the same hold.
          const batch = await q.generateAll(t, { path: 'u', id: 'batch-1', items, choose: async () => 'first' as const });
          assert.equal(batch.id, 'batch-1');
          assert.equal(batch.reserved, 5);
          assert.equal(batch.reservation!.duplicate, 0);
          const retry = await q.generateAll(t, { path: 'u', id: 'batch-1', items, choose: () => 'first' });
          assert.equal(retry.reservation!.duplicate, 1);
          assert.equal(retry.preview.duplicate, 1);
          assert.equal(retry.reserved, 5);
          assert.equal((await q.holds(t)).length, 1);
          assert.deepEqual((await q.holds(t))[0]!.held, { credits: '90' });
          // Settle each item.
          assert.deepEqual((await batch.commit(0, { cost: { credits: 15 } })).charged, { credits: '15' });
          await batch.commit(1);
          assert.deepEqual((await batch.release(2)).released, { credits: '18' });
          assert.equal((await batch.extend(120_000)).id, 'batch-1');
          await batch.commit(3);
          await batch.commit(4);
          assert.deepEqual(await q.holds(t), []);
          assert.equal((await q.get(t)).policies[0]!.used, '69');
          // Everything fits: ALL, without asking.
          const all = await q.generateAll(t, {
            path: 'u', items: items.slice(0, 1), choose: () => assert.fail('not asked when all fit'),
          });
          assert.equal(all.reserved, 1);
          assert.match(all.id, /^batch-/);
          await all.release(0);
        });

        it('events: catch-up of what fired while away, then live, in order, without duplicates', async () => {
          const t = fresh('events');
          await q.set(t, '/', 'b', { metric: 'credits', limit: 100 });
          await q.charge(t, { path: '/', cost: { credits: 85 } }); // warning 80: seq 1, not subscribed
          const events = q.follow(t, { since: 0 });
          try {
            const [first] = await take(events, 1);
            assert.equal(first!.seq, 1);
            assert.equal(first!.threshold, 80);
            await q.charge(t, { path: '/', cost: { credits: 6 } }); // warning 90: seq 2, live
            await q.charge(t, { path: '/', cost: { credits: 9 } }); // over: seq 3, live
            const live = await take(events, 2);
            assert.deepEqual(live.map((e) => [e.seq, e.type]), [[2, 'warning'], [3, 'over']]);
            // A live event equals the log's.
            assert.deepEqual(live, await q.events(t, { since: 1 }));
            await q.reset(t, '/', 'b'); // reset: seq 4
            const [next] = await take(events, 1);
            assert.equal(next!.seq, 4);
            assert.equal(next!.type, 'reset');
            // A hold that expires (time moved by the test clock): seq 5, with its META.
            await q.reserve(t, { path: 'a', ttlMs: 1000, meta: { user: 'u7' }, cost: { credits: 2 } });
            await q.clockAdvance(2000);
            await q.charge(t, { path: 'a', cost: { credits: 0 } }); // the Lua library expires on the next write
            const [expired] = await take(events, 1);
            assert.equal(expired!.type, 'expired');
            assert.deepEqual(expired!.amounts, { credits: '2' });
            assert.deepEqual(expired!.meta, { user: 'u7' });
            assert.deepEqual([expired], await q.events(t, { since: 4 }));
          } finally {
            await events.return!();
          }
          // Resuming after seq 2 delivers 3 and 4 once, then what comes live.
          const resumed = q.follow(t, { since: 2, pageSize: 1 });
          try {
            const caught = await take(resumed, 3);
            assert.deepEqual(caught.map((e) => e.seq), [3, 4, 5]);
            await q.charge(t, { path: '/', cost: { credits: 85 } });
            const [w] = await take(resumed, 1);
            assert.equal(w!.seq, 6);
          } finally {
            await resumed.return!();
          }
        });

        it('events: a reconnect catches up what was published while away', async () => {
          const t = fresh('reconnect');
          await q.set(t, '/', 'b', { metric: 'credits', limit: 100 });
          const events = q.follow(t);
          try {
            await q.charge(t, { path: '/', cost: { credits: 85 } });
            assert.deepEqual((await take(events, 1)).map((e) => e.seq), [1]);
            assert.ok(Number(await cli(server.port, 'CLIENT', 'KILL', 'TYPE', 'pubsub')) >= 1, 'the subscriber was cut');
            await q.charge(t, { path: '/', cost: { credits: 6 } });
            await q.charge(t, { path: '/', cost: { credits: 9 } });
            assert.deepEqual((await take(events, 2)).map((e) => e.seq), [2, 3]);
            await q.reset(t, '/', 'b');
            assert.deepEqual((await take(events, 1)).map((e) => [e.seq, e.type]), [[4, 'reset']]);
          } finally {
            await events.return!();
          }
        });

        it('events: a wrapped log is reported as a gap', async () => {
          const sconn = await d.open(small.port);
          const qs = new Quota(sconn.client);
          try {
            const t = fresh('gap');
            await qs.set(t, '/', 'b', { metric: 'credits', limit: 100 });
            for (let i = 0; i < 3; i++) {
              await qs.charge(t, { path: '/', cost: { credits: 100 } }); // warning 80, 90, over
              await qs.reset(t, '/', 'b'); // reset
            }
            const log = await qs.events(t);
            assert.deepEqual(log.map((e) => e.seq), [8, 9, 10, 11, 12]);
            const gaps: unknown[] = [];
            const events = qs.follow(t, { since: 2, onGap: (g) => gaps.push(g) });
            try {
              const got = await take(events, 5);
              assert.deepEqual(got.map((e) => e.seq), [8, 9, 10, 11, 12]);
              assert.deepEqual(gaps, [{ after: 2, next: 8, reset: 0 }]);
            } finally {
              await events.return!();
            }
          } finally {
            await sconn.close();
          }
        });
      });
    }
  });
}
