//! Amounts: exact decimals with a bounded scale and magnitude.
//!
//! Every amount a client sends has at most [`MAX_SCALE`] fractional digits
//! and an absolute value of at most [`MAX_INPUT`]. Every total the engine
//! keeps (used, held, spent) stays within [`MAX_TOTAL`]. With these bounds a
//! `rust_decimal::Decimal` (96-bit mantissa) never has to round: sums of
//! amounts at scale 10 are exact up to about 7.9e18, and [`MAX_TOTAL`] is
//! below that. A write that would cross [`MAX_TOTAL`] is refused with
//! `ERR limit` instead of being rounded.
//!
//! Lua twin: `D`, exact decimals without floats (lua/src/10_decimal.lua).

use rust_decimal::Decimal;

use super::error::{Error, Result};
use super::names::clip;

/// Fractional digits accepted in an amount (0.0000000001 is the smallest step).
pub const MAX_SCALE: u32 = 10;
/// Largest absolute value of one amount sent by a client: 10^15.
pub const MAX_INPUT: Decimal = Decimal::from_parts(0xA4C6_8000, 0x0003_8D7E, 0, false, 0);
/// Largest absolute value of any total the engine keeps: 10^18.
pub const MAX_TOTAL: Decimal = Decimal::from_parts(0xA764_0000, 0x0DE0_B6B3, 0, false, 0);
/// Longest textual amount accepted (sign, 16 integer digits, point, 10 decimals).
const MAX_TEXT_LEN: usize = 32;

/// Parses a client amount: `-?[0-9]+(\.[0-9]+)?`, no exponent, no spaces.
/// Negative values are accepted here; commands that forbid them say so.
/// Lua twin: `D.parse` (lua/src/10_decimal.lua).
pub fn parse(text: &str) -> Result<Decimal> {
    // The usual amount, a short whole number (below 10^15, so within
    // MAX_INPUT): its value directly, as the general path below gives it.
    if (1..=15).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Decimal::from(text.bytes().fold(0u64, |n, b| n * 10 + u64::from(b - b'0'))));
    }
    let bad = || Error::InvalidAmount(format!("'{}' is not a decimal number", clip(text)));
    if text.is_empty() || text.len() > MAX_TEXT_LEN {
        return Err(bad());
    }
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_part) || frac_part.is_some_and(|f| !all_digits(f)) {
        return Err(bad());
    }
    if frac_part.is_some_and(|f| f.len() > MAX_SCALE as usize) {
        return Err(Error::InvalidAmount(format!("'{}' has more than {MAX_SCALE} decimal places", clip(text))));
    }
    // The text is checked to be plain digits: build the value directly.
    let mut mantissa: i128 = 0;
    for b in int_part.bytes().chain(frac_part.unwrap_or("").bytes()) {
        mantissa = mantissa.checked_mul(10).and_then(|m| m.checked_add(i128::from(b - b'0'))).ok_or_else(bad)?;
    }
    if text.starts_with('-') {
        mantissa = -mantissa;
    }
    let scale = frac_part.map_or(0, str::len) as u32;
    let value = Decimal::try_from_i128_with_scale(mantissa, scale).map_err(|_| bad())?.normalize();
    if value.abs() > MAX_INPUT {
        return Err(Error::InvalidAmount(format!("'{}' is larger than 10^15 in absolute value", clip(text))));
    }
    Ok(value)
}

/// Parses an amount that must not be negative (limits, reservations).
/// Lua twin: `D.parse_non_negative` (lua/src/10_decimal.lua).
pub fn parse_non_negative(text: &str) -> Result<Decimal> {
    let value = parse(text)?;
    if value.is_sign_negative() && !value.is_zero() {
        return Err(Error::InvalidAmount(format!("'{}' must not be negative", clip(text))));
    }
    Ok(value)
}

// ----- exact fixed-point fast paths -----------------------------------
//
// Most amounts are small non-negative numbers at a common scale (whole
// credits, whole requests). For those, sums and comparisons are done on the
// 64-bit mantissas directly; anything else goes through `rust_decimal`. A
// fast path gives the very value (the same mantissa, scale and sign bits)
// that `rust_decimal` gives, so nothing downstream can tell them apart.

/// Powers of ten up to 10^38, for aligning scales and for [`MAX_TOTAL`]
/// at a scale.
const POW10: [u128; 39] = {
    let mut table = [1u128; 39];
    let mut i = 1;
    while i < table.len() {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// The mantissa and scale of a value that is not negative (no sign bit)
/// and whose mantissa fits in 64 bits.
#[inline(always)]
fn small(d: Decimal) -> Option<(u64, u32)> {
    if d.is_sign_negative() {
        return None;
    }
    u64::try_from(d.mantissa()).ok().map(|m| (m, d.scale()))
}

/// The sum of two small values at one scale, as `rust_decimal` builds it
/// (same scale, positive; a 65-bit mantissa fits its 96 bits).
#[inline(always)]
fn small_sum(a: Decimal, b: Decimal) -> Option<(u128, u32)> {
    match (small(a), small(b)) {
        (Some((x, s)), Some((y, t))) if s == t => Some((u128::from(x) + u128::from(y), s)),
        _ => None,
    }
}

#[inline(always)]
fn from_mantissa(m: u128, scale: u32) -> Decimal {
    Decimal::from_parts(m as u32, (m >> 32) as u32, (m >> 64) as u32, false, scale)
}

/// `a + b`, exactly as `rust_decimal` computes it, without its general
/// path for the usual small amounts at one scale.
#[inline]
pub fn plus(a: Decimal, b: Decimal) -> Decimal {
    match small_sum(a, b) {
        Some((m, scale)) => from_mantissa(m, scale),
        None => a + b,
    }
}

/// `a - b`, exactly as `rust_decimal` computes it, without its general
/// path when both are small at one scale and `a ≥ b` (a result that is
/// not negative: the same mantissa, scale and sign).
#[inline]
pub fn minus(a: Decimal, b: Decimal) -> Decimal {
    match (small(a), small(b)) {
        (Some((x, s)), Some((y, t))) if s == t && x >= y => from_mantissa(u128::from(x - y), s),
        _ => a - b,
    }
}

/// `(a × ka).cmp(&(b × kb))` by value, for small factors (percentages):
/// on aligned mantissas when `a` and `b` are small, `None` otherwise.
#[inline]
pub fn cmp_scaled(a: Decimal, ka: u8, b: Decimal, kb: u8) -> Option<std::cmp::Ordering> {
    let ((x, s), (y, t)) = (small(a)?, small(b)?);
    // 2^64 × 255 × 10^16 < 2^128: aligning by up to 16 digits is exact.
    if s.abs_diff(t) > 16 {
        return None;
    }
    let (x, y) = (u128::from(x) * u128::from(ka), u128::from(y) * u128::from(kb));
    Some(if s >= t { x.cmp(&(y * POW10[(s - t) as usize])) } else { (x * POW10[(t - s) as usize]).cmp(&y) })
}

/// `a.cmp(&b)` (by value), on aligned mantissas when both are small.
#[inline]
pub fn cmp(a: Decimal, b: Decimal) -> std::cmp::Ordering {
    if let (Some((x, s)), Some((y, t))) = (small(a), small(b)) {
        // 2^64 × 10^19 < 2^128: aligning by up to 19 digits is exact.
        if s.abs_diff(t) <= 19 {
            let (x, y) = (u128::from(x), u128::from(y));
            return if s >= t { x.cmp(&(y * POW10[(s - t) as usize])) } else { (x * POW10[(t - s) as usize]).cmp(&y) };
        }
    }
    a.cmp(&b)
}

/// Whether `a + b` is certainly within [`MAX_TOTAL`]: both small, at one
/// scale of at most [`MAX_SCALE`] (so `MAX_TOTAL - a` is exact too), and
/// their sum within the bound. `false` says nothing.
#[inline]
pub fn surely_within_total(a: Decimal, b: Decimal) -> bool {
    small_sum(a, b).is_some_and(|(m, scale)| scale <= MAX_SCALE && m <= POW10[18 + scale as usize])
}

/// `value > 0`.
#[inline]
pub fn positive(value: Decimal) -> bool {
    !value.is_sign_negative() && !value.is_zero()
}

/// Adds two totals, refusing results beyond [`MAX_TOTAL`].
/// Lua twin: `D.add` (lua/src/10_decimal.lua).
pub fn add(a: Decimal, b: Decimal) -> Result<Decimal> {
    // MAX_TOTAL at scale s is 10^(18 + s).
    if let Some((m, scale)) = small_sum(a, b)
        && scale <= 20
    {
        return match m <= POW10[18 + scale as usize] {
            true => Ok(from_mantissa(m, scale)),
            false => Err(Error::Limit("amount total would exceed 10^18".into())),
        };
    }
    match a.checked_add(b) {
        Some(sum) if sum.abs() <= MAX_TOTAL => Ok(sum),
        _ => Err(Error::Limit("amount total would exceed 10^18".into())),
    }
}

/// Adds a possibly negative amount to a usage total that never goes below 0.
/// Lua twin: `D.add_floor_zero` (lua/src/10_decimal.lua).
pub fn add_floor_zero(total: Decimal, delta: Decimal) -> Result<Decimal> {
    let sum = add(total, delta)?;
    Ok(if sum.is_sign_negative() { Decimal::ZERO } else { sum })
}

/// Adds a possibly negative amount to a total that never goes below 0
/// and stops at [`MAX_TOTAL`]: for commits, which are never refused (the
/// work is done), where a refused total would leave a hold unsettled.
/// Lua twin: `D.add_saturating` (lua/src/10_decimal.lua).
pub fn add_saturating(total: Decimal, delta: Decimal) -> Decimal {
    if let Some((m, scale)) = small_sum(total, delta)
        && scale <= 20
        && m <= POW10[18 + scale as usize]
    {
        return from_mantissa(m, scale);
    }
    match total.checked_add(delta) {
        Some(sum) if sum.is_sign_negative() => Decimal::ZERO,
        Some(sum) => sum.min(MAX_TOTAL),
        None => MAX_TOTAL,
    }
}

/// The canonical text of an amount: no trailing zeros, no exponent, `"0"` for zero.
/// Lua twin: `D.fmt` (lua/src/10_decimal.lua).
pub fn format(value: Decimal) -> String {
    let mut buf = Text::new();
    buf.write(value).to_string()
}

/// Room for the text of any `Decimal`: a sign, 29 digits, a point and up
/// to 28 leading zeros of a fraction.
const TEXT_CAP: usize = 64;

/// A stack buffer an amount is written into, so that replies and messages
/// format amounts without the formatting machinery or a heap allocation
/// (they are written on every request, up to dozens per reply).
pub struct Text {
    buf: [u8; TEXT_CAP],
}

impl Default for Text {
    fn default() -> Self {
        Text::new()
    }
}

impl Text {
    pub fn new() -> Text {
        Text { buf: [0; TEXT_CAP] }
    }

    /// The canonical text of `value` (as [`format()`] gives it).
    /// Lua twin: `D.fmt` (lua/src/10_decimal.lua).
    pub fn write(&mut self, value: Decimal) -> &str {
        let mantissa = value.mantissa().unsigned_abs();
        let scale = value.scale() as usize;
        // The common case: a mantissa that fits a u64 and a scale whose
        // power of ten does too. The integer and the fraction are written
        // as two integers.
        if let (Ok(mut small), Some(mut scale)) =
            (u64::try_from(mantissa), u32::try_from(scale).ok().filter(|&s| s <= 19))
        {
            while scale > 0 && small.is_multiple_of(10) {
                small /= 10;
                scale -= 1;
            }
            if small == 0 {
                return "0";
            }
            let mut i = if scale > 0 {
                let unit = 10u64.pow(scale);
                let start = put_digits(&mut self.buf, TEXT_CAP, small % unit, scale) - 1;
                self.buf[start] = b'.';
                put_digits(&mut self.buf, start, small / unit, 1)
            } else {
                put_digits(&mut self.buf, TEXT_CAP, small, 1)
            };
            if value.is_sign_negative() {
                i -= 1;
                self.buf[i] = b'-';
            }
            return std::str::from_utf8(&self.buf[i..]).unwrap_or("0");
        }
        // Most amounts fit a u64, whose division is much cheaper than a
        // u128's.
        let len = match u64::try_from(mantissa) {
            Ok(small) => self.digits(small, scale, |m| (m / 10, (m % 10) as u8, m == 0)),
            Err(_) => self.digits(mantissa, scale, |m| (m / 10, (m % 10) as u8, m == 0)),
        };
        let start = TEXT_CAP - len;
        if len == 1 && self.buf[start] == b'0' {
            return "0";
        }
        let mut start = start;
        if value.is_sign_negative() {
            start -= 1;
            self.buf[start] = b'-';
        }
        std::str::from_utf8(&self.buf[start..]).unwrap_or("0")
    }

    /// Writes `mantissa` × 10^-`scale` without trailing fractional zeros at
    /// the end of the buffer, leaving room for a sign; returns the length.
    /// `step` gives (m / 10, m % 10, m == 0).
    fn digits<M: Copy>(&mut self, mut mantissa: M, mut scale: usize, step: impl Fn(M) -> (M, u8, bool)) -> usize {
        // Trailing zeros of the fraction are not shown.
        while scale > 0 {
            let (rest, digit, _) = step(mantissa);
            if digit != 0 {
                break;
            }
            mantissa = rest;
            scale -= 1;
        }
        let mut i = TEXT_CAP;
        let mut written = 0;
        loop {
            let (rest, digit, _) = step(mantissa);
            i -= 1;
            self.buf[i] = b'0' + digit;
            written += 1;
            mantissa = rest;
            if written == scale {
                i -= 1;
                self.buf[i] = b'.';
            }
            if step(mantissa).2 && written >= scale {
                break;
            }
        }
        if written == scale {
            // A fraction below 1 starts with "0.".
            i -= 1;
            self.buf[i] = b'0';
        }
        TEXT_CAP - i
    }
}

/// Writes the decimal digits of `n` (at least `min_digits`, zero-padded)
/// into `buf` ending before `end`; returns where they start.
fn put_digits(buf: &mut [u8; TEXT_CAP], end: usize, mut n: u64, min_digits: u32) -> usize {
    let mut i = end;
    let mut written = 0;
    while n > 0 || written < min_digits {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        written += 1;
    }
    i
}

/// Checks that a decimal read from disk respects the bounds above.
pub fn validate_stored(value: Decimal) -> Result<()> {
    if value.scale() > MAX_SCALE || value.abs() > MAX_TOTAL {
        return Err(Error::InvalidAmount(format!("stored amount {value} is out of range")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn bounds_are_what_their_names_say() {
        assert_eq!(MAX_INPUT, Decimal::from_str("1000000000000000").unwrap());
        assert_eq!(MAX_TOTAL, Decimal::from_str("1000000000000000000").unwrap());
    }

    /// The fixed-point fast paths give the very bits `rust_decimal` gives:
    /// sums (value, scale and sign, zeros included), comparisons, the
    /// bound of totals and `> 0`, for values at equal and unequal scales,
    /// negative, negative zero, near 2^64 and near the bound.
    #[test]
    fn fast_paths_are_bit_identical_to_rust_decimal() {
        let mut values: Vec<Decimal> = Vec::new();
        for (m, scale) in [
            (0i128, 0u32),
            (0, 3),
            (1, 0),
            (1, 10),
            (5, 1),
            (50, 2),
            (999, 0),
            (123_456_789, 4),
            (1_000_000_000_000_000_000, 0),
            (999_999_999_999_999_999, 0),
            (10_000_000_000_000_000_000, 1),
            (u64::MAX as i128, 0),
            (u64::MAX as i128 - 1, 5),
            (u64::MAX as i128 + 1, 0),
            (-7, 0),
            (-7, 2),
            (1, 28),
            (3, 25),
        ] {
            values.push(Decimal::from_i128_with_scale(m, scale));
        }
        let mut negative_zero = Decimal::ZERO;
        negative_zero.set_sign_negative(true);
        values.push(negative_zero);
        let bits = |d: Decimal| d.serialize();
        for &a in &values {
            assert_eq!(positive(a), a > Decimal::ZERO, "{a}");
            for &b in &values {
                assert_eq!(cmp(a, b), a.cmp(&b), "{a} cmp {b}");
                if let Some(sum) = a.checked_add(b) {
                    assert_eq!(bits(plus(a, b)), bits(sum), "{a} + {b}");
                }
                if let Some(difference) = a.checked_sub(b) {
                    assert_eq!(bits(minus(a, b)), bits(difference), "{a} - {b}");
                }
                for (ka, kb) in [(100u8, 80u8), (100, 100), (100, 1), (100, 255), (1, 100)] {
                    if let (Some(x), Some(y)) = (a.checked_mul(ka.into()), b.checked_mul(kb.into()))
                        && let Some(fast) = cmp_scaled(a, ka, b, kb)
                    {
                        assert_eq!(fast, x.cmp(&y), "{a} × {ka} cmp {b} × {kb}");
                    }
                }
                if surely_within_total(a, b) {
                    assert!(a + b <= MAX_TOTAL && b.min(MAX_TOTAL - a) == b, "{a} + {b}");
                }
                match (add(a, b), add_general(a, b)) {
                    (Ok(x), Ok(y)) => assert_eq!(bits(x), bits(y), "{a} + {b}"),
                    (x, y) => assert_eq!(x.is_ok(), y.is_ok(), "{a} + {b}"),
                }
            }
        }
    }

    fn add_general(a: Decimal, b: Decimal) -> Result<Decimal> {
        match a.checked_add(b) {
            Some(sum) if sum.abs() <= MAX_TOTAL => Ok(sum),
            _ => Err(Error::Limit("amount total would exceed 10^18".into())),
        }
    }

    /// Short whole numbers take a shortcut: the same value, scale and
    /// text as the general path gives (reached here through a `.0`).
    #[test]
    fn whole_numbers_parse_as_the_general_path_does() {
        for text in ["0", "7", "007", "10", "1000", "123456789012345", "999999999999999", "000000000000000"] {
            let (fast, general) = (parse(text).unwrap(), parse(&format!("{text}.0")).unwrap());
            assert_eq!((fast, fast.scale(), format(fast)), (general, general.scale(), format(general)), "{text}");
        }
        assert_eq!(parse("1000000000000000").unwrap(), MAX_INPUT, "16 digits take the general path");
        assert!(parse("1000000000000001").is_err());
    }

    #[test]
    fn parse_accepts_plain_decimals_and_rejects_everything_else() {
        // input, expected canonical text (None = error)
        let rows: &[(&str, Option<&str>)] = &[
            ("0", Some("0")),
            ("120", Some("120")),
            ("0.0125", Some("0.0125")),
            ("1.50", Some("1.5")),
            ("-3", Some("-3")),
            ("-0", Some("0")),
            ("0.0000000001", Some("0.0000000001")),
            ("1000000000000000", Some("1000000000000000")),
            ("1000000000000001", None),
            ("0.00000000001", None),
            ("1e5", None),
            ("", None),
            (" 1", None),
            ("+1", None),
            (".5", None),
            ("5.", None),
            ("1.2.3", None),
            ("NaN", None),
            ("inf", None),
            ("--1", None),
            ("١", None),
        ];
        for (input, want) in rows {
            let got = parse(input).ok().map(format);
            assert_eq!(got.as_deref(), *want, "input {input:?}");
        }
    }

    #[test]
    fn text_matches_the_decimal_display() {
        let mut rows: Vec<Decimal> = ["0", "-0", "1", "-1", "10", "100.000", "0.5", "-0.05", "0.0000000001", "12.50"]
            .iter()
            .map(|t| Decimal::from_str(t).unwrap())
            .collect();
        rows.extend([MAX_INPUT, -MAX_TOTAL, Decimal::MAX, Decimal::MIN, Decimal::new(1, 28), Decimal::new(-123, 28)]);
        rows.extend([Decimal::from_i128_with_scale(79_228_162_514_264_337_593_543_950_335, 10)]);
        let mut seed: u64 = 7;
        for _ in 0..5000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let m = i128::from(seed as i64) * i128::from((seed >> 20) as u16);
            rows.push(Decimal::from_i128_with_scale(m, (seed >> 59) as u32 % 29));
        }
        for value in rows {
            let n = value.normalize();
            let want = if n.is_zero() { "0".to_string() } else { n.to_string() };
            assert_eq!(Text::new().write(value), want, "{value:?}");
        }
    }

    #[test]
    fn exact_arithmetic_has_no_float_error() {
        let tenth = parse("0.1").unwrap();
        let sum = add(add(tenth, tenth).unwrap(), tenth).unwrap();
        assert_eq!(format(sum), "0.3");
    }

    #[test]
    fn totals_beyond_the_bound_are_refused() {
        let big = parse("1000000000000000").unwrap();
        let mut total = Decimal::ZERO;
        for _ in 0..1000 {
            total = add(total, big).unwrap();
        }
        assert!(matches!(add(total, Decimal::ONE), Err(Error::Limit(_))));
        assert_eq!(add_floor_zero(Decimal::ONE, parse("-5").unwrap()).unwrap(), Decimal::ZERO);
    }
}
