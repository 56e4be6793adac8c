/**
 * Typed replies. Field names are EXACTLY the server's (README command reference);
 * amounts are `A` (string by default), integers and flags (0/1) numbers, nil null.
 * Fields a newer server adds are kept in `extra`, never dropped.
 */
import type { ObjSchema, Schema } from './decode';

export type Amounts<A = string> = Record<string, A>;

interface Extra {
  /** Fields this client does not know (a newer server's), as the driver gave them. */
  extra?: Record<string, unknown>;
}

export interface PolicyCheck<A = string> extends Extra {
  kind: 'policy' | 'access' | 'archived' | string;
  path: string;
  pass: number;
  policy?: string;
  metric?: string;
  mode?: string;
  window?: string;
  limit?: A;
  used?: A;
  held?: A;
  requested?: A;
  remaining?: A;
  status?: string;
  period_start?: number;
  period_end?: number;
  rule?: string;
  service?: string | null;
  model?: string | null;
}

export interface ReserveReply<A = string> extends Extra {
  allowed: number;
  id: string | null;
  expires_at: number;
  items: number;
  fits: number;
  reserved: number;
  cost: Amounts<A>;
  held: Amounts<A>;
  checks?: PolicyCheck<A>[];
  denied_by: string[];
  message: string;
  duplicate: number;
}

export interface Drawn<A = string> extends Extra {
  path: string;
  policy: string;
  grant: string;
  amount: A;
}

export interface CommitReply<A = string> extends Extra {
  id: string;
  charged: Amounts<A>;
  released: Amounts<A>;
  overage: Amounts<A>;
  duplicate: number;
  expired: number;
  over: string[];
  drawn: Drawn<A>[];
}

export interface ReleaseReply<A = string> extends Extra {
  id: string;
  released: Amounts<A>;
  duplicate: number;
  expired: number;
}

export interface ExtendReply extends Extra {
  id: string;
  expires_at: number;
}

export interface ChargeReply<A = string> extends Extra {
  allowed: number;
  charged: Amounts<A>;
  checks?: PolicyCheck<A>[];
  denied_by: string[];
  message: string;
  over: string[];
  duplicate: number;
  drawn: Drawn<A>[];
}

export interface Policy<A = string> extends Extra {
  policy: string;
  metric: string;
  mode: string;
  window: string;
  limit: A;
  base_limit?: A;
  used: A;
  held: A;
  remaining: A;
  status: string;
  warn: number[];
  /** A month's day (31), a week's day ('sunday') or a year's start ('04-01'). */
  anchor?: number | string;
  /** The zone of a calendar window when not UTC ('America/New_York', '+05:30'). */
  tz?: string;
  /** The zone rules' version ('2026f'), for a named zone. */
  tzdata?: string;
  rollover?: A;
  service?: string;
  model?: string;
  low?: A;
  granted?: A;
  period_start?: number;
  period_end?: number;
  inflight?: number;
  source?: string;
}

export interface AccessEntry extends Extra {
  service: string;
  model?: string;
}

export interface AccessRules extends Extra {
  allow: AccessEntry[];
  deny: AccessEntry[];
}

export interface AccessReply extends AccessRules {
  path: string;
}

export interface NodeReply<A = string> extends Extra {
  path: string;
  status: string;
  spent: Amounts<A>;
  policies: Policy<A>[];
  access?: AccessRules;
  note?: string | null;
  tags?: string[];
  archived?: number;
  plan?: string | null;
  plan_version?: number | null;
  plan_missing?: number;
}

export interface TreeNode<A = string> extends NodeReply<A> {
  children?: TreeNode<A>[];
  more?: number;
  nodes?: number;
  truncated?: number;
}

export interface Grant<A = string> extends Extra {
  id: string;
  amount: A;
  remaining: A;
  priority: number;
  expires_at: number;
  period: number;
  created_at: number;
  note: string | null;
}

export interface GrantReply<A = string> extends Policy<A> {
  grant: Grant<A>;
  duplicate: number;
}

export interface RevokeReply<A = string> extends Extra {
  id: string;
  removed: A;
}

export interface Period<A = string> extends Extra {
  start: number;
  end: number;
  /** The period's first local date in the policy's zone ('2026', '2026-11', '2026-11-27',
   * '2026-11-27T13'); absent for rolling and none windows. */
  label?: string;
  used: A;
  allowance: A;
  rolled_over: A;
  granted: A;
}

export interface LabelReply extends Extra {
  path: string;
  note: string | null;
  tags: string[];
}

export interface Hold<A = string> extends Extra {
  id: string;
  paths: string[];
  expires_at: number;
  items: number;
  held: Amounts<A>;
  meta?: Record<string, string>;
}

export interface QuotaEvent<A = string> extends Extra {
  seq: number;
  type: string;
  time: number;
  path: string | null;
  policy?: string | null;
  metric?: string | null;
  used?: A | null;
  held?: A | null;
  limit?: A | null;
  threshold?: number;
  periods?: number;
  rolled_over?: A;
  id?: string | null;
  amounts?: Amounts<A>;
  remaining?: A;
  low?: A;
  grant?: string;
  amount?: A;
  expires_at?: number;
  meta?: Record<string, string>;
  rule?: string;
  service?: string | null;
  model?: string | null;
}

export interface UsageBucket<A = string> extends Extra {
  start: number;
  spent: Amounts<A>;
}

export interface UsageGroup<A = string> extends Extra {
  name: string;
  service?: string;
  model?: string;
  spent: Amounts<A>;
}

export interface UsageReply<A = string> extends Extra {
  path: string;
  by: string;
  since: number;
  until: number;
  buckets: UsageBucket<A>[];
  total: Amounts<A>;
  groups?: UsageGroup<A>[];
}

export interface EstimateLine<A = string> extends Extra {
  name: string;
  quantity: A;
  rate: A;
  subtotal: A;
}

export interface EstimateMultiplier<A = string> extends Extra {
  attribute: string;
  value: string;
  factor: A;
}

export interface EstimateReply<A = string> extends Extra {
  price: string;
  metric: string;
  cost: A;
  lines: EstimateLine<A>[];
  subtotal: A;
  minimum: A | null;
  multipliers: EstimateMultiplier<A>[];
  charges: Amounts<A>;
}

// ----- schemas -----------------------------------------------------------------

const check: ObjSchema = {
  obj: {
    kind: 'str', path: 'str', policy: 'str', metric: 'str', mode: 'str', window: 'str',
    limit: 'amount', used: 'amount', held: 'amount', requested: 'amount', remaining: 'amount',
    pass: 'int', status: 'str', period_start: 'int', period_end: 'int',
    rule: 'str', service: 'str', model: 'str',
  },
};
const drawn: ObjSchema = { obj: { path: 'str', policy: 'str', grant: 'str', amount: 'amount' } };

const policyFields: Record<string, Schema> = {
  policy: 'str', metric: 'str', mode: 'str', window: 'str', limit: 'amount', base_limit: 'amount',
  used: 'amount', held: 'amount', remaining: 'amount', status: 'str', warn: 'ints', anchor: 'intorstr',
  tz: 'str', tzdata: 'str', rollover: 'amount', service: 'str', model: 'str', low: 'amount', granted: 'amount',
  period_start: 'int', period_end: 'int', inflight: 'int', source: 'str',
};
const accessEntry: ObjSchema = { obj: { service: 'str', model: 'str' } };
const accessRules: ObjSchema = { obj: { allow: { list: accessEntry }, deny: { list: accessEntry } } };

const nodeFields: Record<string, Schema> = {
  path: 'str', status: 'str', spent: 'amounts', policies: { list: { obj: policyFields } },
  access: accessRules, note: 'str', tags: 'strs', archived: 'int',
  plan: 'str', plan_version: 'int', plan_missing: 'int',
};
const treeNode: ObjSchema = {
  obj: { ...nodeFields, children: { list: () => treeNode }, more: 'int', nodes: 'int', truncated: 'int' },
};
const grant: ObjSchema = {
  obj: {
    id: 'str', amount: 'amount', remaining: 'amount', priority: 'int', expires_at: 'int',
    period: 'int', created_at: 'int', note: 'str',
  },
};
const period: ObjSchema = {
  obj: { start: 'int', end: 'int', label: 'str', used: 'amount', allowance: 'amount', rolled_over: 'amount', granted: 'amount' },
};

export const SCHEMAS = {
  reserve: {
    obj: {
      allowed: 'int', id: 'str', expires_at: 'int', items: 'int', fits: 'int', reserved: 'int',
      cost: 'amounts', held: 'amounts', checks: { list: check }, denied_by: 'strs', message: 'str',
      duplicate: 'int',
    },
  },
  commit: {
    obj: {
      id: 'str', charged: 'amounts', released: 'amounts', overage: 'amounts', duplicate: 'int',
      expired: 'int', over: 'strs', drawn: { list: drawn },
    },
  },
  release: { obj: { id: 'str', released: 'amounts', duplicate: 'int', expired: 'int' } },
  extend: { obj: { id: 'str', expires_at: 'int' } },
  charge: {
    obj: {
      allowed: 'int', charged: 'amounts', checks: { list: check }, denied_by: 'strs', message: 'str',
      over: 'strs', duplicate: 'int', drawn: { list: drawn },
    },
  },
  get: { obj: nodeFields },
  tree: treeNode,
  access: { obj: { path: 'str', allow: { list: accessEntry }, deny: { list: accessEntry } } },
  grant: { obj: { ...policyFields, grant, duplicate: 'int' } },
  grants: { list: grant },
  revoke: { obj: { id: 'str', removed: 'amount' } },
  reset: period,
  history: { list: period },
  label: { obj: { path: 'str', note: 'str', tags: 'strs' } },
  holds: {
    list: { obj: { id: 'str', paths: 'strs', expires_at: 'int', items: 'int', held: 'amounts', meta: 'strmap' } },
  },
  event: {
    obj: {
      seq: 'int', type: 'str', time: 'int', path: 'str', policy: 'str', metric: 'str',
      used: 'amount', held: 'amount', limit: 'amount', threshold: 'int', periods: 'int',
      rolled_over: 'amount', id: 'str', amounts: 'amounts', remaining: 'amount', low: 'amount',
      grant: 'str', amount: 'amount', expires_at: 'int', meta: 'strmap', rule: 'str',
      service: 'str', model: 'str',
    },
  },
  usage: {
    obj: {
      path: 'str', by: 'str', since: 'int', until: 'int',
      buckets: { list: { obj: { start: 'int', spent: 'amounts' } } },
      total: 'amounts',
      groups: { list: { obj: { name: 'str', service: 'str', model: 'str', spent: 'amounts' } } },
    },
  },
  estimate: {
    obj: {
      price: 'str', metric: 'str', cost: 'amount',
      lines: { list: { obj: { name: 'str', quantity: 'amount', rate: 'amount', subtotal: 'amount' } } },
      subtotal: 'amount', minimum: 'amount',
      multipliers: { list: { obj: { attribute: 'str', value: 'str', factor: 'amount' } } },
      charges: 'amounts',
    },
  },
} satisfies Record<string, Schema>;
