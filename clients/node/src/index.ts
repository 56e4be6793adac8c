export { Quota, assertAllowed } from './quota';
export type {
  AmountMap, Backend, Batch, ChargeOptions, FollowOptions, Gap, GenerateAllOptions, GrantOptions, HoldHandle,
  Item, MetaIn, PrimaryResult, QuotaOptions, ReserveOptions, SetOptions, SettleOptions, TreeOptions, UsageIn, UsageOptions,
} from './quota';
export * from './errors';
export * from './replies';
export { amountText } from './amounts';
export type { AmountIn } from './amounts';
export { keySlot } from './slot';
export type { DecimalFactory } from './decode';
