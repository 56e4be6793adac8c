/**
 * Schema-driven decoding. RESP3 gives maps (node-redis: objects or Map); RESP2 gives flat
 * [k1, v1, k2, v2…] arrays, where an empty map and an empty list are both `[]` and an array
 * of strings (`denied_by`) looks like a map. The schema says what each field is, so both
 * protocols decode to the same value.
 */

export type Schema =
  | 'str' // text (or nil)
  | 'int' // integer, flag (or nil)
  | 'intorstr' // an integer or a text by kind (a policy's anchor: 31, 'sunday', '04-01')
  | 'amount' // decimal string -> the amount type
  | 'amounts' // map metric -> amount
  | 'strmap' // map name -> text (META pairs), order kept
  | 'strs' // array of text
  | 'ints' // array of integers
  | 'json' // a JSON string, parsed
  | 'raw' // left as the driver gave it
  | ObjSchema
  | ListSchema
  | (() => Schema);

export interface ObjSchema {
  readonly obj: Readonly<Record<string, Schema>>;
}
export interface ListSchema {
  readonly list: Schema;
}

export type DecimalFactory<A> = (text: string) => A;

/** The key/value pairs of a map reply, whatever the protocol or driver. */
export function pairs(raw: unknown): Array<[string, unknown]> {
  if (raw == null) return [];
  if (Array.isArray(raw)) {
    if (raw.length % 2 !== 0) throw new TypeError('quota: a map reply has an odd number of elements');
    const out: Array<[string, unknown]> = [];
    for (let i = 0; i < raw.length; i += 2) out.push([text(raw[i]) as string, raw[i + 1]]);
    return out;
  }
  if (raw instanceof Map) return [...raw.entries()].map(([k, v]) => [text(k) as string, v]);
  if (typeof raw === 'object' && !Buffer.isBuffer(raw)) return Object.entries(raw as Record<string, unknown>);
  throw new TypeError(`quota: expected a map reply, got ${typeof raw}`);
}

function text(v: unknown): string | null {
  if (v == null) return null;
  if (typeof v === 'string') return v;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  return String(v);
}

function int(v: unknown): number | null {
  if (v == null) return null;
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  const n = Number(text(v));
  if (!Number.isFinite(n)) throw new TypeError(`quota: expected an integer, got ${String(v)}`);
  return n;
}

function list(v: unknown): unknown[] {
  if (v == null) return [];
  if (Array.isArray(v)) return v;
  if (v instanceof Set) return [...v];
  throw new TypeError('quota: expected an array reply');
}

/** A field the schema does not know (a newer server's): maps of RESP3 become objects. */
function unknownValue(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (Array.isArray(v)) return v.map(unknownValue);
  if (v instanceof Map) return Object.fromEntries([...v.entries()].map(([k, x]) => [text(k), unknownValue(x)]));
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, unknownValue(x)]));
  }
  return v;
}

export function decode<A>(raw: unknown, schema: Schema, dec: DecimalFactory<A>): unknown {
  if (typeof schema === 'function') return decode(raw, schema(), dec);
  if (typeof schema === 'string') {
    switch (schema) {
      case 'str':
        return text(raw);
      case 'int':
        return int(raw);
      case 'intorstr':
        return raw == null || typeof raw === 'number' || typeof raw === 'bigint' ? int(raw) : text(raw);
      case 'amount': {
        const t = text(raw);
        return t === null ? null : dec(t);
      }
      case 'amounts': {
        const out: Record<string, A> = {};
        for (const [k, v] of pairs(raw)) out[k] = dec(text(v) as string);
        return out;
      }
      case 'strmap': {
        const out: Record<string, string> = {};
        for (const [k, v] of pairs(raw)) out[k] = text(v) as string;
        return out;
      }
      case 'strs':
        return list(raw).map((x) => text(x) as string);
      case 'ints':
        return list(raw).map((x) => int(x) as number);
      case 'json': {
        const t = text(raw);
        return t === null ? null : JSON.parse(t);
      }
      case 'raw':
        return unknownValue(raw);
    }
  }
  if ('list' in schema) {
    if (raw == null) return null;
    return list(raw).map((x) => decode(x, schema.list, dec));
  }
  if (raw == null) return null;
  const out: Record<string, unknown> = {};
  let extra: Record<string, unknown> | undefined;
  for (const [k, v] of pairs(raw)) {
    const field = schema.obj[k];
    if (field === undefined) {
      (extra ??= {})[k] = unknownValue(v);
    } else {
      out[k] = decode(v, field, dec);
    }
  }
  if (extra) out.extra = extra;
  return out;
}
