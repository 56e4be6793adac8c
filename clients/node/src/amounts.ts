/** Amounts in: exact only. */

/** What an amount may be given as: a decimal string, a bigint, a safe integer, or a decimal object (decimal.js, big.js…). */
export type AmountIn = string | bigint | number | { toString(): string };

const DECIMAL = /^-?\d+(\.\d+)?$/;

/**
 * The amount as the server reads it. A JS number must be a safe integer (0.1 + 0.2 is not 0.3);
 * an object is written with its toFixed() when it has one (no exponent), else toString().
 * Throws TypeError before anything is sent.
 */
export function amountText(value: AmountIn): string {
  switch (typeof value) {
    case 'string':
      return value;
    case 'bigint':
      return value.toString();
    case 'number':
      if (!Number.isSafeInteger(value)) {
        throw new TypeError(
          `amounts are exact: pass a string, bigint, safe integer or decimal object, not the number ${value}`,
        );
      }
      return String(value);
    case 'object': {
      if (value === null) break;
      const withFixed = value as { toFixed?: () => string };
      const text = typeof withFixed.toFixed === 'function' ? withFixed.toFixed() : value.toString();
      if (typeof text === 'string' && DECIMAL.test(text)) return text;
      throw new TypeError(`amounts are exact: ${String(text)} is not a plain decimal`);
    }
    default:
      break;
  }
  throw new TypeError(`amounts are exact: pass a string, bigint, safe integer or decimal object, not ${typeof value}`);
}
