/** The README's tours, run as written (with stubs for the caller's own functions). */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Redis from 'ioredis';
import { createClient } from 'redis';
import { Quota, QuotaEvent, Gap } from '../src';
import { Server, startServer } from './servers';

describe('README tours', () => {
  let server: Server;
  before(async () => {
    server = await startServer('module');
  });
  after(async () => server?.stop());

  it('ioredis', async () => {
    const redis = new Redis(server.port);
    try {
      const generate = async () => ({ usage: { input_tokens: 1000, output_tokens: 1200 } });
      // --- as in the README
      const q = new Quota(redis);
      await q.priceSet('chat/gpt-x', { metric: 'credits', rates: { input_tokens: '2.50/1M', output_tokens: '10/1M' } });
      await q.set('acme', '/', 'monthly', { metric: 'credits', limit: '1000', window: 'month' });
      const r = await q.reserve('acme', { path: 'members/u7', cost: { credits: '30' }, meta: [['user', 'u7']] });
      if (!r.allowed) console.log(r.message, r.denied_by);
      else await q.commit('acme', r.id!, { cost: { credits: '27.5' } });
      const node = await q.get('acme', 'members/u7');
      await q.withHold('acme', { path: 'members/u7', usage: { 'chat/gpt-x': { input_tokens: 1000, output_tokens: 4000 } } },
        async (h) => { const out = await generate(); h.actual({ usage: { 'chat/gpt-x': out.usage } }); });
      // ---
      assert.equal(node.spent.credits, '27.5');
      assert.equal((await q.get('acme', 'members/u7')).spent.credits, '27.5145');
    } finally {
      redis.disconnect();
    }
  });

  it('node-redis', async () => {
    const lastSeq = 0;
    const items = [{ cost: { credits: 400 } }, { cost: { credits: 400 } }, { cost: { credits: 400 } }];
    const asked: string[] = [];
    const ask = (message: string) => (asked.push(message), 'first' as const);
    const gaps: Gap[] = [];
    const warn = (g: Gap) => gaps.push(g);
    const seen: QuotaEvent[] = [];
    const handle = (e: QuotaEvent) => seen.push(e);
    // --- as in the README
    const client = await createClient({ url: `redis://127.0.0.1:${server.port}`, RESP: 3 }).connect();
    const q = new Quota(client);
    await q.priceSet('chat/gpt-x', { metric: 'credits', rates: { input_tokens: '2.50/1M', output_tokens: '10/1M' } });
    const est = await q.estimate('chat/gpt-x', { input_tokens: 1000, output_tokens: 500 });
    const batch = await q.generateAll('acme', { path: 'members/u7', items, choose: (p) => ask(p.message) });
    for (let i = 0; i < batch.reserved; i++) await batch.commit(i);
    for await (const e of q.follow('acme', { since: lastSeq, onGap: (g) => warn(g) })) { handle(e); break; }
    // ---
    try {
      assert.equal(est.cost, '0.0075');
      assert.deepEqual(asked, ['enough credits for 2 of 3 items: 972.4855 available at /, 1200 needed']);
      assert.equal(batch.reserved, 2);
      assert.equal(seen[0]!.type, 'warning');
      assert.deepEqual(gaps, []);
    } finally {
      client.destroy();
    }
  });
});
