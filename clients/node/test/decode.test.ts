/** The decoder alone: RESP2 flat arrays and RESP3 maps give the same values, unknown fields kept. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decode } from '../src/decode';
import { SCHEMAS } from '../src/replies';
import { amountText, keySlot } from '../src';

const id = (s: string) => s;

describe('decode', () => {
  it('empty maps and lists, denied_by never paired, on both protocols', () => {
    const resp2 = [
      'allowed', 0, 'id', null, 'expires_at', 0, 'items', 1, 'fits', 0, 'reserved', 0,
      'cost', ['credits', '5'], 'held', [], 'denied_by', ['/#a', 'p#b'], 'message', 'no', 'duplicate', 0,
    ];
    const resp3 = {
      allowed: 0, id: null, expires_at: 0, items: 1, fits: 0, reserved: 0,
      cost: { credits: '5' }, held: {}, denied_by: ['/#a', 'p#b'], message: 'no', duplicate: 0,
    };
    const a = decode(resp2, SCHEMAS.reserve, id);
    assert.deepEqual(a, decode(resp3, SCHEMAS.reserve, id));
    assert.deepEqual((a as any).held, {});
    assert.deepEqual((a as any).denied_by, ['/#a', 'p#b']);
    // node-redis with a Map type mapping, and Buffers.
    const mapped = new Map<unknown, unknown>(Object.entries(resp3));
    mapped.set('cost', new Map([[Buffer.from('credits'), Buffer.from('5')]]));
    mapped.set('message', Buffer.from('no'));
    assert.deepEqual(decode(mapped, SCHEMAS.reserve, id), a);
  });

  it('a policy anchor is an integer or a text, with tz and tzdata; a history entry has a label; older servers send none', () => {
    const policy = (raw: unknown) => (decode({ policies: [raw] }, SCHEMAS.get, id) as any).policies[0];
    const m2 = policy(['policy', 'm', 'window', 'month', 'anchor', 31, 'tz', 'America/New_York', 'tzdata', '2026f']);
    const m3 = policy(new Map<unknown, unknown>([
      [Buffer.from('policy'), Buffer.from('m')], ['window', 'month'], ['anchor', 31],
      ['tz', Buffer.from('America/New_York')], ['tzdata', '2026f'],
    ]));
    assert.deepEqual(m2, { policy: 'm', window: 'month', anchor: 31, tz: 'America/New_York', tzdata: '2026f' });
    assert.deepEqual(m3, m2);
    assert.deepEqual(policy(['window', 'week', 'anchor', Buffer.from('sunday'), 'tz', '+05:30']),
      { window: 'week', anchor: 'sunday', tz: '+05:30' });
    assert.deepEqual(policy({ window: 'year', anchor: '04-01' }), { window: 'year', anchor: '04-01' });
    assert.deepEqual(policy({ window: 'month', anchor: 1 }), { window: 'month', anchor: 1 });
    const hist = decode([['start', 1, 'end', 2, 'label', '2026-11', 'used', '3']], SCHEMAS.history, id) as any;
    assert.deepEqual(hist, [{ start: 1, end: 2, label: '2026-11', used: '3' }]);
  });

  it('a field a newer server adds is kept in extra', () => {
    const resp2 = ['id', 'r1', 'expires_at', 5, 'shiny', ['a', 1], 'newer', 'x'];
    const r = decode(resp2, SCHEMAS.extend, id) as any;
    assert.deepEqual(r, { id: 'r1', expires_at: 5, extra: { shiny: ['a', 1], newer: 'x' } });
    const r3 = decode({ id: 'r1', expires_at: 5, shiny: { a: 1 } }, SCHEMAS.extend, id) as any;
    assert.deepEqual(r3.extra, { shiny: { a: 1 } });
  });

  it('amounts in', () => {
    assert.equal(amountText('0.1'), '0.1');
    assert.equal(amountText(10n ** 18n), '1000000000000000000');
    assert.equal(amountText(-42), '-42');
    const small = { toFixed: () => '0.0000001', toString: () => '1e-7' };
    assert.equal(amountText(small), '0.0000001');
    // review20 F6: toString(), exponents written out exactly; never toFixed()'s rounding.
    const rounds = { toFixed: () => '1', toString: () => '0.5' };
    assert.equal(amountText(rounds), '0.5');
    assert.equal(amountText({ toString: () => '1.25e+21' }), '1250000000000000000000');
    assert.equal(amountText({ toString: () => '-1.5E-7' }), '-0.00000015');
    assert.equal(amountText({ toString: () => '12e0' }), '12');
    assert.throws(() => amountText(new Number(0.5) as unknown as { toString(): string }), TypeError);
    assert.equal(amountText(new Number(7) as unknown as { toString(): string }), '7');
    assert.throws(() => amountText(0.1 + 0.2), TypeError);
    assert.throws(() => amountText(Number.MAX_SAFE_INTEGER + 1), TypeError);
    assert.throws(() => amountText(NaN), TypeError);
    assert.throws(() => amountText({ toString: () => 'abc' }), TypeError);
  });

  it('hash slots as Redis Cluster computes them', () => {
    assert.equal(keySlot('foo'), 12182);
    assert.equal(keySlot('123456789'), 12739);
    assert.equal(keySlot('{user1000}.following'), keySlot('user1000'));
    assert.equal(keySlot('{}a'), keySlot('{}a'));
    assert.notEqual(keySlot('{}a'), keySlot('a'));
  });
});
