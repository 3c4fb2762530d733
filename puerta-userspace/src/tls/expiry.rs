//! The `notAfter` of an X.509 certificate, for the expiry gauge on `/metrics`. rustls checks
//! validity itself but does not expose it; a full X.509 parser (x509-parser: a dozen crates) for
//! one field is more than this walk of five DER elements, which the tests check against
//! certificates made by rcgen.

/// Seconds since the Unix epoch at which `der` (one certificate) expires; `None` if it is not a
/// certificate this walk understands.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (certificate, _) = element(der, 0x30)?;
    let (tbs, _) = element(certificate, 0x30)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xA0) {
        rest = element(rest, 0xA0)?.1; // version
    }
    rest = element(rest, 0x02)?.1; // serialNumber
    rest = element(rest, 0x30)?.1; // signature algorithm
    rest = element(rest, 0x30)?.1; // issuer
    let (validity, _) = element(rest, 0x30)?;
    let after_not_before = skip_any(validity)?;
    let tag = *after_not_before.first()?;
    let (time, _) = element(after_not_before, tag)?;
    parse_time(tag, time)
}

/// The contents of the element at the start of `input` if its tag is `tag`, and what follows it.
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *input.first()? != tag {
        return None;
    }
    let (len, header) = length(&input[1..])?;
    let start = 1 + header;
    let end = start.checked_add(len)?;
    Some((input.get(start..end)?, input.get(end..)?))
}

/// What follows the element at the start of `input`, whatever its tag.
fn skip_any(input: &[u8]) -> Option<&[u8]> {
    element(input, *input.first()?).map(|(_, rest)| rest)
}

/// A DER length and how many bytes encoded it (short form, or long form of up to 4 bytes).
fn length(input: &[u8]) -> Option<(usize, usize)> {
    let first = *input.first()?;
    if first < 0x80 {
        return Some((first as usize, 1));
    }
    let n = (first & 0x7F) as usize;
    if n == 0 || n > 4 {
        return None;
    }
    let bytes = input.get(1..1 + n)?;
    let len = bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
    Some((len, 1 + n))
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn parse_time(tag: u8, text: &[u8]) -> Option<i64> {
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = std::str::from_utf8(text.get(range)?).ok()?;
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, rest) = match tag {
        0x17 => {
            let yy = digits(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        0x18 => (digits(0..4)?, 4),
        _ => return None,
    };
    if text.get(rest + 10) != Some(&b'Z') {
        return None;
    }
    let month = digits(rest..rest + 2)?;
    let day = digits(rest + 2..rest + 4)?;
    let (h, m, s) = (
        digits(rest + 4..rest + 6)?,
        digits(rest + 6..rest + 8)?,
        digits(rest + 8..rest + 10)?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    fn cert_expiring(year: i32, month: u8, day: u8) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let pki = testkit::tls::Pki::new(dir.path(), "expiry").unwrap();
        let issued = pki.issue_expiring("leaf", year, month, day).unwrap();
        CertificateDer::from_pem_file(issued.cert).unwrap().to_vec()
    }

    #[test]
    fn reads_utc_time_and_generalized_time() {
        // rcgen writes UTCTime up to 2049 and GeneralizedTime from 2050, as RFC 5280 says.
        assert_eq!(not_after(&cert_expiring(2030, 1, 2)), Some(1_893_542_400));
        assert_eq!(not_after(&cert_expiring(2051, 3, 1)), Some(2_561_241_600));
    }

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(parse_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(parse_time(0x17, b"500101000000Z"), Some(-631_152_000));
    }

    #[test]
    fn rejects_what_is_not_a_certificate() {
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]), None);
        assert_eq!(not_after(&[0x30, 0x03, 0x02, 0x01, 0x00]), None);
        assert_eq!(parse_time(0x17, b"301301000000Z"), None);
        assert_eq!(parse_time(0x17, b"3001010000Z"), None);
        let mut cert = cert_expiring(2030, 1, 2);
        cert.truncate(cert.len() / 3);
        assert_eq!(not_after(&cert), None);
    }
}
