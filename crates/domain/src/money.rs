//! Prices as people read them: integer minor units (cents) to "€32.00".

/// How a currency is written: its sign, whether the sign comes first and
/// how many decimals its minor unit has.
fn style(currency: &str) -> (&str, bool, u32) {
    match currency {
        "EUR" => ("€", true, 2),
        "USD" => ("$", true, 2),
        "GBP" => ("£", true, 2),
        "JPY" => ("¥", true, 0),
        "KRW" => ("₩", true, 0),
        // Anything else by its ISO code, as `Intl.NumberFormat("en")` does.
        other => (other, false, 2),
    }
}

/// Formats an amount in the currency's minor unit, e.g. `3200` `EUR` as
/// `€32.00` and `123456` `EUR` as `€1,234.56`.
pub fn format_money(minor: u64, currency: &str) -> String {
    let (sign, first, decimals) = style(currency);
    let number = if decimals == 0 {
        group_thousands(minor)
    } else {
        let unit = 10u64.pow(decimals);
        format!(
            "{}.{:0width$}",
            group_thousands(minor / unit),
            minor % unit,
            width = decimals as usize
        )
    };
    if first {
        format!("{sign}{number}")
    } else {
        format!("{sign} {number}")
    }
}

fn group_thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn euros_and_cents() {
        assert_eq!(format_money(3200, "EUR"), "€32.00");
        assert_eq!(format_money(2805, "EUR"), "€28.05");
        assert_eq!(format_money(5, "EUR"), "€0.05");
        assert_eq!(format_money(0, "EUR"), "€0.00");
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(format_money(123_456, "EUR"), "€1,234.56");
        assert_eq!(format_money(100_000_000, "USD"), "$1,000,000.00");
        assert_eq!(format_money(99_999, "GBP"), "£999.99");
    }

    #[test]
    fn currencies_without_minor_units_and_unknown_ones() {
        assert_eq!(format_money(4500, "JPY"), "¥4,500");
        assert_eq!(format_money(3200, "CHF"), "CHF 32.00");
    }
}
