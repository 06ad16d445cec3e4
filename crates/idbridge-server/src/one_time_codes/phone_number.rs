//! Phone numbers as codes are sent to them: normalised to E.164, masked for pages.

/// `raw` as E.164 (`+8613800138000`), or `None` when it is not a phone number.
/// Spaces, dashes, dots and parentheses are ignored; `00` means `+`; a number
/// without a country code gets `default_cc` (11-digit mainland mobiles for 86).
pub fn normalize_phone(raw: &str, default_cc: &str) -> Option<String> {
    let compact: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{3000}'))
        .collect();
    let international = compact
        .strip_prefix('+')
        .or_else(|| compact.strip_prefix("00"));
    let digits = match international {
        Some(rest) => rest.to_owned(),
        None => {
            if !compact.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            if default_cc == "86" {
                // Mainland mobiles: 11 digits starting with 1.
                if compact.len() != 11 || !compact.starts_with('1') {
                    return None;
                }
                format!("86{compact}")
            } else {
                format!("{default_cc}{}", compact.trim_start_matches('0'))
            }
        }
    };
    let ok = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
        && (!digits.starts_with("86") || (digits.len() == 13 && digits[2..].starts_with('1')));
    ok.then(|| format!("+{digits}"))
}

/// `+86 138****8000`: enough for the person to recognise their number.
pub fn mask_phone(e164: &str) -> String {
    let digits = e164.trim_start_matches('+');
    let n = digits.len();
    if n < 8 || !digits.is_ascii() {
        return e164.to_owned();
    }
    match digits.strip_prefix("86") {
        Some(rest) if rest.len() == 11 => format!("+86 {}****{}", &rest[..3], &rest[7..]),
        _ => format!("+{}****{}", &digits[..3], &digits[n - 4..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_normalize_to_e164() {
        let n = |s| normalize_phone(s, "86");
        assert_eq!(n("13800138000").as_deref(), Some("+8613800138000"));
        assert_eq!(n(" 138 0013-8000 ").as_deref(), Some("+8613800138000"));
        assert_eq!(n("+86 138 0013 8000").as_deref(), Some("+8613800138000"));
        assert_eq!(n("008613800138000").as_deref(), Some("+8613800138000"));
        assert_eq!(n("+1 (415) 555-2671").as_deref(), Some("+14155552671"));
        assert_eq!(n("+44 20 7946 0958").as_deref(), Some("+442079460958"));
        for bad in [
            "",
            "12345",
            "23800138000",
            "+86 12345",
            "+0123456789",
            "phone",
            "+86138001380001",
        ] {
            assert_eq!(n(bad), None, "{bad}");
        }
        assert_eq!(
            normalize_phone("020 7946 0958", "44").as_deref(),
            Some("+442079460958")
        );
    }

    #[test]
    fn masked_numbers_keep_the_country_and_the_last_four_digits() {
        assert_eq!(mask_phone("+8613800138000"), "+86 138****8000");
        assert_eq!(mask_phone("+14155552671"), "+141****2671");
    }
}
