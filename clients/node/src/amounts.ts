/** Amounts in: exact only. */

/** What an amount may be given as: a decimal string, a bigint, a safe integer, or a decimal object (decimal.js, big.js…). */
export type AmountIn = string | bigint | number | { toString(): string };

const DECIMAL = /^-?\d+(\.\d+)?$/;

const EXPONENT = /^(-?)(\d+)(?:\.(\d+))?e([+-]?\d+)$/i;

/** `1.5e-7` as `0.00000015`, exactly (string work, no float). Other text unchanged. */
function plain(text: string): string {
  const m = EXPONENT.exec(text);
  if (!m) return text;
  const [, sign, whole, frac = '', exp] = m as unknown as [string, string, string, string | undefined, string];
  const digits = whole + frac;
  const point = whole.length + Number(exp); // where the decimal point goes in `digits`
  let intPart: string;
  let fracPart: string;
  if (point <= 0) {
    intPart = '0';
    fracPart = '0'.repeat(-point) + digits;
  } else if (point >= digits.length) {
    intPart = digits + '0'.repeat(point - digits.length);
    fracPart = '';
  } else {
    intPart = digits.slice(0, point);
    fracPart = digits.slice(point);
  }
  intPart = intPart.replace(/^0+(?=\d)/, '');
  fracPart = fracPart.replace(/0+$/, '');
  return `${sign}${intPart}${fracPart ? `.${fracPart}` : ''}`;
}

/**
 * The amount as the server reads it. A JS number (or Number object) must be a safe integer
 * (0.1 + 0.2 is not 0.3); any other object is written with its toString(), an exponent
 * (`1e+21`, `1.5e-7`) written out exactly. Never toFixed(): its default is 0 digits for
 * Number and for some decimal types, a silent rounding (review20 F6).
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
      if (value instanceof Number) return amountText(value.valueOf());
      const text = plain(String(value.toString()));
      if (DECIMAL.test(text)) return text;
      throw new TypeError(`amounts are exact: ${text} is not a plain decimal`);
    }
    default:
      break;
  }
  throw new TypeError(`amounts are exact: pass a string, bigint, safe integer or decimal object, not ${typeof value}`);
}
