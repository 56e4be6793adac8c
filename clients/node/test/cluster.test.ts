/**
 * A cluster of three primaries on each backend, over ioredis Cluster and node-redis
 * createCluster: tree commands go to the slot's node (no MOVED), server-wide writes to
 * every primary.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { keySlot, Quota } from '../src';
import { DRIVERS } from './clients';
import { Backend, ClusterServers, cli, errorStats, startCluster } from './servers';

for (const backend of ['module', 'lua'] as Backend[]) {
  describe(`${backend} backend, 3-primary cluster`, () => {
    let cluster: ClusterServers;
    before(async () => {
      cluster = await startCluster(backend);
    });
    after(async () => cluster?.stop());

    for (const d of DRIVERS) {
      it(`${d.name}: every tree command on its slot's node, server-wide writes on every primary`, async () => {
        const conn = await d.openCluster(cluster.ports);
        const tag = d.name.replace(/\W+/g, '');
        try {
          const movedBefore = (await Promise.all(cluster.ports.map(errorStats))).map((s) => s.MOVED ?? 0);
          const q = new Quota(conn.client);
          assert.equal(await q.backend(), backend);
          // Server-wide: the price book and the test clock on every primary.
          const price = `chat/${tag}`;
          assert.equal(await q.priceSet(price, { metric: 'credits', rates: { output_tokens: '1' } }), 'OK');
          const clock = await q.clockSet(1_800_000_000_000);
          assert.equal(await q.clockAdvance(500), clock + 500);
          for (const port of cluster.ports) {
            if (backend === 'module') {
              assert.match(await cli(port, 'QUOTA.PRICE', 'LIST'), new RegExp(price));
              assert.equal((await cli(port, 'QUOTA.DEBUG', 'CLOCK', 'GET')).trim(), String(clock + 500));
            }
          }
          if (backend === 'lua') {
            // The Lua library's price book and clock are keys: sent to the node serving each.
            assert.ok((await q.priceList()).includes(price));
            assert.equal(await q.clockGet(), clock + 500);
            assert.equal((await q.estimate(price, { output_tokens: 2 })).cost, '2');
          }
          // Many trees, on every node: writes, reads, FCALL with the tree's key.
          const slots = new Set<number>();
          for (let i = 0; i < 60; i++) {
            const t = `${tag}-tree-${i}`;
            slots.add(keySlot(t));
            await q.set(t, '/', 'b', { metric: 'credits', limit: 100 });
            // The Lua library's price book is one key: USAGE items work only for the trees on
            // its node (lua/README "Keys"), so COST items there.
            const r = await q.reserve(
              t,
              backend === 'module'
                ? { path: 'a', usage: { [price]: { output_tokens: 3 } } }
                : { path: 'a', cost: { credits: 3, output_tokens: 3 } },
            );
            assert.equal(r.allowed, 1);
            await q.commit(t, r.id!);
            await q.charge(t, { path: 'a', cost: { credits: 1 } });
            assert.deepEqual((await q.get(t, 'a')).spent, { credits: '4', output_tokens: '3' });
            await q.tree(t);
            await q.holds(t);
            await q.events(t);
          }
          assert.ok(slots.size > 50);
          const movedAfter = (await Promise.all(cluster.ports.map(errorStats))).map((s) => s.MOVED ?? 0);
          assert.deepEqual(movedAfter, movedBefore, 'no MOVED on any node (INFO errorstats)');
          // Every primary served some of the trees.
          for (const port of cluster.ports) {
            const keys = Number(/keys=(\d+)/.exec(await cli(port, 'INFO', 'keyspace'))?.[1] ?? 0);
            assert.ok(keys > 0, `node ${port} has keys`);
          }
          // Events on a cluster: catch-up then live.
          const t = `${tag}-events`;
          await q.set(t, '/', 'b', { metric: 'credits', limit: 10 });
          await q.charge(t, { path: '/', cost: { credits: 8 } });
          const events = q.follow(t);
          try {
            const first = await events.next();
            assert.equal(first.value?.seq, 1);
            await q.charge(t, { path: '/', cost: { credits: 2 } });
            const live = [await events.next(), await events.next()].map((x) => x.value?.type);
            assert.deepEqual(live, ['warning', 'over']);
          } finally {
            await events.return!();
          }
          assert.equal(await q.priceDel(price), 1);
          if (d.name.startsWith('ioredis') && backend === 'module') {
            // The control: ioredis's own call() does not know QUOTA.*'s key and pays MOVED.
            for (let i = 0; i < 30; i++) await (conn.client as any).call('QUOTA.GET', `${tag}-tree-${i}`, '/');
            const moved = (await Promise.all(cluster.ports.map(errorStats))).map((s) => s.MOVED ?? 0);
            assert.ok(moved.reduce((a, b) => a + b) > movedAfter.reduce((a, b) => a + b), 'the control sees MOVED');
          }
        } finally {
          await conn.close();
        }
      });
    }
  });
}
