/**
 * Regression tests of the fixes to the hostile review of issue 20 (/work/brief/review20.md)
 * for findings without a TypeScript test of the reviewer's (F8, F9, F11; F2's detectable
 * cases). Both backends, ioredis and node-redis.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Conflict, NotLoaded, PermissionDenied, PrimaryResult, Quota, QuotaEvent, ReserveOptions } from '../src';
import IORedis from 'ioredis';
import { DRIVERS, nextEvent } from './clients';
import { Backend, cli, ClusterServers, Server, startCluster, startServer } from './servers';

let treeCount = 0;
const fresh = (what: string) => `fix20-${++treeCount}-${what}-${process.pid}`;

async function used(q: Quota, t: string): Promise<string> {
  return (await q.get(t)).policies.find((p) => p.policy === 'cap')!.used;
}

for (const backend of ['module', 'lua'] as Backend[]) {
  describe(`fix20 ${backend} backend`, () => {
    let server: Server;
    before(async () => {
      server = await startServer(backend);
    });
    after(async () => {
      await server?.stop();
    });

    it('F2: a tree deleted and created again while followed: reset gap, then the new log', async () => {
      const conn = await DRIVERS[0]!.open(server.port);
      try {
        const q = new Quota(conn.client);
        const t = fresh('recreated-live');
        await q.set(t, '/', 'cap', { metric: 'credits', limit: '100' });
        const gaps: unknown[] = [];
        const events = q.follow(t, { onGap: (g) => gaps.push(g) });
        try {
          await q.charge(t, { path: 'x', cost: { credits: '85' } }); // warning 80: seq 1
          assert.equal((await nextEvent(events)).seq, 1);
          await q.charge(t, { path: 'x', cost: { credits: '10' } }); // warning 90: seq 2
          assert.equal((await nextEvent(events)).seq, 2);
          await cli(server.port, 'DEL', t);
          await q.set(t, '/', 'cap', { metric: 'credits', limit: '100' });
          await q.charge(t, { path: 'x', cost: { credits: '95' } }); // the new log: seq 1, 2
          const got: QuotaEvent[] = [await nextEvent(events), await nextEvent(events)];
          assert.deepEqual(
            got.map((e) => [e.seq, e.threshold, e.used]),
            [
              [1, 80, '95'],
              [2, 90, '95'],
            ],
          );
          assert.deepEqual(gaps, [{ after: 2, next: 1, reset: 1 }]);
          await q.charge(t, { path: 'x', cost: { credits: '10' } }); // over: seq 3, as usual
          const over = await nextEvent(events);
          assert.deepEqual([over.seq, over.type], [3, 'over']);
          assert.equal(gaps.length, 1);
        } finally {
          await events.return!();
        }
      } finally {
        await conn.close();
      }
    });

    it('F2: a follower started after the tree was recreated with a shorter log: reset gap', async () => {
      const conn = await DRIVERS[1]!.open(server.port);
      try {
        const q = new Quota(conn.client);
        const t = fresh('recreated-away');
        await q.set(t, '/', 'cap', { metric: 'credits', limit: '100' });
        await q.charge(t, { path: 'x', cost: { credits: '85' } }); // seq 1
        await q.charge(t, { path: 'x', cost: { credits: '10' } }); // seq 2
        await cli(server.port, 'DEL', t);
        await q.set(t, '/', 'cap', { metric: 'credits', limit: '100' });
        await q.charge(t, { path: 'x', cost: { credits: '85' } }); // the new log's seq 1
        const gaps: unknown[] = [];
        const events = q.follow(t, { since: 2, onGap: (g) => gaps.push(g) });
        try {
          const e = await nextEvent(events);
          assert.deepEqual([e.seq, e.threshold, e.used], [1, 80, '85']);
          assert.deepEqual(gaps, [{ after: 2, next: 1, reset: 1 }]);
          // A live event below `since` on an unchanged log is not a reset: a plain follower.
          await q.charge(t, { path: 'x', cost: { credits: '10' } }); // seq 2
          assert.equal((await nextEvent(events)).seq, 2);
          assert.equal(gaps.length, 1);
        } finally {
          await events.return!();
        }
      } finally {
        await conn.close();
      }
    });

    it('F10: a command the server does not know is NotLoaded (the other backend forced)', async () => {
      const conn = await DRIVERS[0]!.open(server.port);
      try {
        const q = new Quota(conn.client, { backend: backend === 'module' ? 'lua' : 'module' });
        await assert.rejects(q.get('acme'), (e: unknown) => e instanceof NotLoaded && e.kind === 'not_loaded');
      } finally {
        await conn.close();
      }
    });

    for (const d of [DRIVERS[0]!, DRIVERS[2]!]) {
      it(`F9: withHold with an id already committed does not run the body again (${d.name})`, async () => {
        const conn = await d.open(server.port);
        try {
          const q = new Quota(conn.client);
          const t = fresh('hold-id');
          await q.set(t, '/', 'cap', { metric: 'credits', limit: '100' });
          const runs: number[] = [];
          await q.withHold(t, { path: 'p', id: 'req-1', cost: { credits: 10 } }, async () => void runs.push(1));
          await assert.rejects(
            q.withHold(t, { path: 'p', id: 'req-1', cost: { credits: 10 } }, async () => void runs.push(2)),
            (e: unknown) => e instanceof Conflict && /no longer held/.test(e.message),
          );
          assert.deepEqual(runs, [1]);
          assert.equal(await used(q, t), '10');
          // Released, then retried: refused too (the hold is gone).
          await assert.rejects(
            q.withHold(t, { path: 'p', id: 'req-r', cost: { credits: 10 } }, async () => {
              throw new Error('generation failed');
            }),
            /generation failed/,
          );
          await assert.rejects(
            q.withHold(t, { path: 'p', id: 'req-r', cost: { credits: 10 } }, async () => void runs.push(3)),
            Conflict,
          );
          // A live hold behind the id (the first attempt died before committing): the retry
          // runs the body and commits that hold, once.
          const first = await q.reserve(t, { path: 'p/q', id: 'req-2', cost: { credits: 5 } });
          assert.equal(first.allowed, 1);
          await q.withHold(t, { path: 'p/q', id: 'req-2', cost: { credits: 5 } }, async (h) => {
            assert.equal(h.reply.duplicate, 1);
            runs.push(4);
          });
          assert.deepEqual(runs, [1, 4]);
          assert.equal(await used(q, t), '15');
          assert.deepEqual(await q.holds(t), []);
        } finally {
          await conn.close();
        }
      });

      it(`F8: withHold exposes the commit; an expired hold's commit warns (${d.name})`, async () => {
        const conn = await d.open(server.port);
        const warnings: Error[] = [];
        const onWarning = (w: Error) => warnings.push(w);
        process.on('warning', onWarning);
        try {
          const q = new Quota(conn.client);
          const t = fresh('hold-expired');
          await q.set(t, '/', 'cap', { metric: 'credits', limit: '100' });
          let handle: { commit: unknown } | undefined;
          const out = await q.withHold(t, { path: 'h', ttlMs: 1000, cost: { credits: 5 } }, async (h) => {
            handle = h;
            assert.equal(h.commit, undefined);
            await q.clockAdvance(5000);
            return 'done';
          });
          assert.equal(out, 'done');
          const commit = handle!.commit as { expired: number; overage: Record<string, string> };
          assert.equal(commit.expired, 1);
          assert.deepEqual(commit.overage, { credits: '5' });
          await new Promise((r) => setImmediate(r)); // emitWarning delivers on the next tick
          assert.equal(warnings.filter((w) => (w as { code?: string }).code === 'QUOTA_HOLD_EXPIRED').length, 1);
          // A commit in time: the reply, no warning.
          await q.withHold(t, { path: 'h', ttlMs: 1000, cost: { credits: 5 } }, async (h) => {
            handle = h;
          });
          assert.equal((handle!.commit as { expired: number }).expired, 0);
          await new Promise((r) => setImmediate(r));
          assert.equal(warnings.filter((w) => (w as { code?: string }).code === 'QUOTA_HOLD_EXPIRED').length, 1);
        } finally {
          process.off('warning', onWarning);
          await conn.close();
        }
      });

      it(`F11: generateAll asks choose() again when the ALL reservation is refused (${d.name})`, async () => {
        const conn = await d.open(server.port);
        try {
          const q = new Quota(conn.client);
          const t = fresh('batch-race');
          await q.set(t, '/', 'cap', { metric: 'credits', limit: '100' });
          const items = [0, 1, 2, 3].map(() => ({ cost: { credits: 20 } }));
          // Another request takes 50 credits between the preview and the ALL reservation.
          const reserve = q.reserve.bind(q);
          let raced = false;
          q.reserve = async (tree: string, o: ReserveOptions) => {
            if (o.mode === 'all' && !raced) {
              raced = true;
              await q.charge(tree, { path: 'other', cost: { credits: 50 } });
            }
            return reserve(tree, o);
          };
          const offers: Array<{ fits: number; allowed: number }> = [];
          const batch = await q.generateAll(t, {
            path: 'u',
            items,
            choose: (p) => {
              offers.push({ fits: p.fits, allowed: p.allowed });
              return 'first';
            },
          });
          assert.ok(raced);
          assert.equal(batch.preview.fits, 4);
          assert.deepEqual(offers, [{ fits: 2, allowed: 0 }]);
          assert.equal(batch.choice, 'first');
          assert.equal(batch.reserved, 2);
          assert.equal(batch.reservation!.allowed, 1);
          // Nothing fits any more: no choice, a refused reservation, 'stop'.
          raced = false;
          const none = await q.generateAll(t, {
            path: 'u',
            items: [{ cost: { credits: 10 } }],
            choose: () => assert.fail('nothing fits: nothing to choose'),
          });
          assert.equal(none.preview.fits, 1);
          assert.equal(none.choice, 'stop');
          assert.equal(none.reserved, 0);
          assert.equal(none.reservation!.allowed, 0);
          // No race: 'all'.
          raced = true;
          const t2 = fresh('batch-fine');
          await q.set(t2, '/', 'cap', { metric: 'credits', limit: '100' });
          const fine = await q.generateAll(t2, { path: 'u', items: [{ cost: { credits: 5 } }], choose: () => 'stop' });
          assert.equal(fine.choice, 'all');
          assert.equal(fine.reserved, 1);
        } finally {
          await conn.close();
        }
      });
    }
  });
}

const PLAN = { paths: { '/': { cap: { metric: 'credits', limit: '100', window: 'month' } } } };

// F15: a server-wide write that one primary refuses: the others have it; the error says which.
describe('F15: server-wide writes on a module cluster', () => {
  let cluster: ClusterServers;
  before(async () => {
    cluster = await startCluster('module');
  });
  after(async () => {
    await cluster?.stop();
  });

  for (const d of [DRIVERS[0]!, DRIVERS[2]!]) {
    it(`F15: a primary that fails is reported per primary; planSet replies the highest version (${d.name})`, async () => {
      const conn = await d.openCluster(cluster.ports);
      const refusing = cluster.ports[1]!;
      const plan = `plan-${d.name.replace(/\W+/g, '-')}-${process.pid}`;
      try {
        const q = new Quota(conn.client);
        await cli(refusing, 'ACL', 'SETUSER', 'default', '-quota.plan');
        const err = await q.planSet(plan, PLAN).then(
          () => assert.fail('one primary refuses: planSet must reject'),
          (e: unknown) => e,
        );
        assert.ok(err instanceof PermissionDenied, String(err));
        const primaries = (err as unknown as { primaries: PrimaryResult[] }).primaries;
        assert.equal(primaries.length, 3);
        assert.deepEqual(
          primaries.filter((p) => p.error !== undefined).map((p) => p.node),
          [`127.0.0.1:${refusing}`],
        );
        assert.deepEqual(
          primaries.filter((p) => p.error === undefined).map((p) => p.reply),
          [1, 1],
        );
        for (const port of cluster.ports) {
          const has = (await cli(port, 'QUOTA.PLAN', 'LIST')).includes(plan);
          assert.equal(has, port !== refusing, `the plan on ${port}`);
        }
        // The next set (changed): version 2 where it was, 1 on the primary that missed it; the highest.
        await cli(refusing, 'ACL', 'SETUSER', 'default', '+@all');
        const changed = { paths: { '/': { cap: { metric: 'credits', limit: '200', window: 'month' } } } };
        assert.equal(await q.planSet(plan, changed), 2);
        assert.equal(await cli(refusing, 'QUOTA.PLAN', 'GET', plan).then((j) => JSON.parse(j).version), 1);
        assert.equal(await q.planDel(plan), 1);
      } finally {
        await cli(refusing, 'ACL', 'SETUSER', 'default', '+@all');
        await conn.close();
      }
    });
  }
});

// F14, the other way a subscriber comes back: its node is gone for good (shut down). The
// follower moves to another node and catches up what was published meanwhile.
describe('F14: follow() on an ioredis Cluster moves on when its node is gone', () => {
  it('F14: the subscriber node shut down: events published meanwhile arrive (module)', async () => {
    const cluster = await startCluster('module');
    const conn = await DRIVERS[0]!.openCluster(cluster.ports);
    const direct = new Map(cluster.ports.map((port) => [port, new IORedis(port, '127.0.0.1', { lazyConnect: true })]));
    try {
      const q = new Quota(conn.client);
      for (let attempt = 0; attempt < 40; attempt++) {
        const t = fresh('cluster-move');
        await q.set(t, '/', 'b', { metric: 'credits', limit: '100' });
        const events = q.follow(t);
        try {
          await q.charge(t, { path: '/', cost: { credits: '85' } }); // warning 80: seq 1
          assert.equal((await nextEvent(events)).seq, 1);
          let treeNode: number | undefined;
          let subNode: number | undefined;
          const slot = Number(await cli(cluster.ports[0]!, 'CLUSTER', 'KEYSLOT', t));
          for (const [port, r] of direct) {
            if (Number(await r.call('CLUSTER', 'COUNTKEYSINSLOT', String(slot))) > 0) treeNode = port;
            const numsub = (await r.call('PUBSUB', 'NUMSUB', `quota:events:${t}`)) as [string, number];
            if (Number(numsub[1]) > 0) subNode = port;
          }
          if (treeNode === undefined || subNode === undefined || treeNode === subNode) continue; // another try
          direct.get(subNode)!.disconnect();
          direct.delete(subNode);
          await cli(subNode, 'SHUTDOWN', 'NOSAVE').catch(() => undefined);
          // Published while the follower has no subscriber (its node is gone).
          await q.charge(t, { path: '/', cost: { credits: '6' } }); // warning 90: seq 2
          await q.charge(t, { path: '/', cost: { credits: '9' } }); // over: seq 3
          assert.deepEqual([(await nextEvent(events)).seq, (await nextEvent(events)).seq], [2, 3]);
          return;
        } finally {
          await events.return!();
        }
      }
      assert.fail('the follower never subscribed off the node of its tree in 40 tries');
    } finally {
      for (const r of direct.values()) r.disconnect();
      await conn.close();
      await cluster.stop();
    }
  });
});
