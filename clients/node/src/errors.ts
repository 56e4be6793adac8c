/** Errors by kind, as the README "Errors" table names them. */

export type ErrorKind =
  | 'arity'
  | 'syntax'
  | 'invalid_amount'
  | 'unknown_metric'
  | 'limit'
  | 'not_found'
  | 'eviction'
  | 'permission'
  | 'wrong_type'
  | 'layout'
  | 'conflict'
  | 'not_loaded'
  | 'denied';

/** Base of every error quota replies with. `message` is the server's full text. */
export class QuotaError extends Error {
  readonly kind: ErrorKind;
  /** The command as sent (`QUOTA.RESERVE` or `FCALL quota_reserve`), without its arguments. */
  readonly command: string;
  constructor(kind: ErrorKind, message: string, command: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
    this.command = command;
    this.name = new.target.name;
  }
}
export class ArityError extends QuotaError {}
export class QuotaSyntaxError extends QuotaError {}
export class InvalidAmount extends QuotaError {}
export class UnknownMetric extends QuotaError {}
export class LimitExceeded extends QuotaError {}
export class NotFound extends QuotaError {}
export class EvictionRefused extends QuotaError {}
export class PermissionDenied extends QuotaError {}
export class WrongType extends QuotaError {}
export class LayoutError extends QuotaError {}
export class Conflict extends QuotaError {}
export class NotLoaded extends QuotaError {}

/** A refusal (`allowed` 0) where the caller cannot go on without the hold. */
export class Denied<R extends DenialLike = DenialLike> extends QuotaError {
  readonly reply: R;
  readonly denied_by: string[];
  readonly checks: unknown[];
  constructor(reply: R, command: string) {
    super('denied', reply.message ?? 'denied', command);
    this.reply = reply;
    this.denied_by = reply.denied_by ?? [];
    this.checks = reply.checks ?? [];
  }
}

export interface DenialLike {
  allowed: number;
  message?: string;
  denied_by?: string[];
  checks?: unknown[];
}

type Ctor = new (kind: ErrorKind, message: string, command: string, options?: { cause?: unknown }) => QuotaError;

const PREFIXES: Array<[string, ErrorKind, Ctor]> = [
  ['ERR unknown command', 'not_loaded', NotLoaded],
  ['ERR Function not found', 'not_loaded', NotLoaded],
  ['ERR wrong number of arguments', 'arity', ArityError],
  ['ERR syntax:', 'syntax', QuotaSyntaxError],
  ['ERR unknown subcommand', 'syntax', QuotaSyntaxError],
  ['ERR invalid amount', 'invalid_amount', InvalidAmount],
  ['ERR unknown metric', 'unknown_metric', UnknownMetric],
  ['ERR limit:', 'limit', LimitExceeded],
  ['NOTFOUND', 'not_found', NotFound],
  ['ERR eviction:', 'eviction', EvictionRefused],
  ['NOPERM', 'permission', PermissionDenied],
  ['WRONGTYPE', 'wrong_type', WrongType],
  ['ERR layout', 'layout', LayoutError],
  ['ERR ', 'conflict', Conflict],
];

/** The server's error text, whichever driver wrapped it; undefined for anything else. */
export function serverErrorText(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  // ioredis: ReplyError; node-redis: ErrorReply (SimpleError and BlobError extend it).
  for (let p = Object.getPrototypeOf(err); p && p !== Error.prototype; p = Object.getPrototypeOf(p)) {
    const name = (p.constructor as { name?: string } | undefined)?.name;
    if (name === 'ReplyError' || name === 'ErrorReply') return err.message;
  }
  return undefined;
}

/** A server error reply as the QuotaError of its kind; anything else unchanged. */
export function translateError(err: unknown, command: string): unknown {
  const text = serverErrorText(err);
  if (text === undefined) return err;
  for (const [prefix, kind, ctor] of PREFIXES) {
    if (text.startsWith(prefix)) return new ctor(kind, text, command, { cause: err });
  }
  return err;
}
