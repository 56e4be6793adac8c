/** Every command once, on a fresh tree, at a fixed time: the replies, by name. */
import { Quota } from '../src';

export const T0 = 1_800_000_000_000; // 2027-01-15T08:00:00Z

export async function everyCommand(q: Quota, t: string): Promise<Record<string, unknown>> {
  const r: Record<string, unknown> = {};
  r.clockSet = await q.clockSet(T0);
  r.priceSet = await q.priceSet('img/pix', {
    metric: 'credits',
    rates: { images: '4' },
    multipliers: { quality: { standard: '1', hd: '2' } },
  });
  await q.priceSet('chat/gpt', '{"metric":"credits","rates":{"input_tokens":"2.50/1M","output_tokens":"10/1M"},"minimum":"0.0001"}');
  r.priceGet = await q.priceGet('img/pix');
  r.estimateMultiplied = await q.estimate('img/pix', { images: 3, quality: 'hd' });
  r.estimateMinimum = await q.estimate('chat/gpt', [['input_tokens', 1]]);
  r.set = await q.set(t, '/', 'monthly', { metric: 'credits', limit: 100, window: 'month', low: '5' });
  await q.set(t, 'members/u7', 'cap', { metric: 'credits', limit: '50', warn: [50] });
  r.getNew = await q.get(t, 'members/u7');
  r.getBare = await q.get(t, 'members');
  r.label = await q.label(t, 'members/u7', { note: 'seat', tags: ['b', 'a'] });
  r.labelCleared = await q.label(t, 'members', { tags: [] });
  r.allow = await q.allow(t, 'members', { service: 'chat' });
  r.deny = await q.deny(t, 'members', { service: 'chat', model: 'gpt-bad' });
  r.access = await q.access(t, 'members');
  r.accessEmpty = await q.access(t, '/');
  r.reserve = await q.reserve(t, {
    path: 'members/u7',
    id: 'r1',
    ttlMs: 60_000,
    service: 'chat',
    meta: [['user', 'u7'], ['feature', 'x']],
    cost: { credits: '10' },
  });
  r.reserveRepeat = await q.reserve(t, { path: 'members/u7', id: 'r1', service: 'chat', cost: { credits: '10' } });
  r.reserveDenied = await q.reserve(t, {
    path: 'members/u7',
    service: 'chat',
    mode: 'dryrun',
    items: [{ cost: { credits: 10 } }, { cost: { credits: 100 } }],
  });
  r.reserveRefusedByRules = await q.reserve(t, { path: 'members/u7', service: 'video', cost: { credits: 1 } });
  r.reserveBrief = await q.reserve(t, {
    path: 'members/u7',
    id: 'r2',
    service: 'chat',
    brief: true,
    mode: 'upto',
    items: [{ cost: { credits: 1 } }, { cost: new Map([['credits', 2n]]) }],
  });
  r.holds = await q.holds(t);
  r.holdsNone = await q.holds(t, { path: 'nobody' });
  r.extend = await q.extend(t, 'r1', 30_000);
  r.commit = await q.commit(t, 'r1', { cost: { credits: '12' } });
  r.releaseItem = await q.release(t, 'r2', { item: 0 });
  r.release = await q.release(t, 'r2');
  r.grant = await q.grant(t, '/', 'monthly', '20', { id: 'g1', note: 'promo' });
  r.grants = await q.grants(t, '/', 'monthly');
  r.grantsNone = await q.grants(t, 'members/u7', 'cap');
  r.chargeOver = await q.charge(t, { path: 'members/u7', id: 'c1', service: 'chat', cost: { credits: 40 } });
  r.chargeDrawn = await q.charge(t, { path: '/', cost: { credits: 60 }, meta: { job: 'nightly' } });
  r.chargeAgainstRules = await q.charge(t, { path: 'members/u7', service: 'video', cost: { credits: 1 } });
  r.chargeRefused = await q.charge(t, { path: 'members/u7', check: true, service: 'chat', cost: { credits: 1000 } });
  r.revoke = await q.revoke(t, '/', 'monthly', 'g1');
  r.historyNone = await q.history(t, '/', 'monthly');
  r.reset = await q.reset(t, 'members/u7', 'cap');
  r.history = await q.history(t, 'members/u7', 'cap');
  r.get = await q.get(t, '/');
  r.getLabelled = await q.get(t, 'members/u7');
  r.tree = await q.tree(t);
  r.treeTop = await q.tree(t, { depth: 0 });
  r.usage = await q.usage(t, '/', { by: 'hour', since: T0 - 3 * 3_600_000, group: 'service' });
  r.usageChildren = await q.usage(t, '/', { group: 'child', metric: 'credits' });
  r.events = await q.events(t);
  r.eventsNone = await q.events(t, { since: 1000 });
  r.planSet = await q.planSet('eqplan', { paths: { '/': { base: { metric: 'credits', limit: '5' } } } });
  r.planGet = await q.planGet('eqplan');
  r.planList = (await q.planList()).filter((n) => n.startsWith('eq'));
  await q.planSet('eqgone', { paths: { '/': { base: { metric: 'credits', limit: '1' } } } });
  r.planDel = await q.planDel('eqgone');
  r.planDelMissing = await q.planDel('eqgone');
  await q.priceSet('eq/gone', { metric: 'credits', rates: { images: '1' } });
  r.priceList = (await q.priceList()).filter((n) => n === 'eq/gone' || n === 'img/pix');
  r.priceDel = await q.priceDel('eq/gone');
  r.assign = await q.assign(`${t}:plan`, 'eqplan');
  r.getPlanned = await q.get(`${t}:plan`);
  r.assignNone = await q.assign(`${t}:plan`, null);
  r.archive = await q.archive(t, 'members/u7');
  r.reserveArchived = await q.reserve(t, { path: 'members/u7', service: 'chat', cost: { credits: 1 } });
  r.restore = await q.restore(t, 'members/u7');
  r.unset = await q.unset(t, 'members/u7', 'cap');
  r.delpath = await q.delpath(t, 'members/u7');
  r.accessClear = await q.access(t, 'members', { clear: true });
  r.version = await q.version();
  r.clockGet = await q.clockGet();
  r.clockAdvance = await q.clockAdvance(1000);
  return r;
}

/** Paths to every `extra` in a reply: a field the schema missed. */
export function extras(v: unknown, at = ''): string[] {
  if (Array.isArray(v)) return v.flatMap((x, i) => extras(x, `${at}[${i}]`));
  if (v && typeof v === 'object') {
    return Object.entries(v).flatMap(([k, x]) => (k === 'extra' ? [`${at}.extra ${JSON.stringify(x)}`] : extras(x, `${at}.${k}`)));
  }
  return [];
}
