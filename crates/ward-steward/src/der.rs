//! The two bits of DER the Steward writes and reads by hand: an OCTET STRING around
//! CBOR bytes (the value of Ward's extensions).

pub(crate) use ward_attest::ratls::der_octet_string as octet_string;

/// The contents of a DER OCTET STRING that is exactly `der` (no trailing bytes).
pub(crate) fn parse_octet_string(der: &[u8]) -> Option<&[u8]> {
    if *der.first()? != 0x04 {
        return None;
    }
    let first = *der.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (first as usize, 2usize)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = der.get(2..2 + n)?;
        if bytes[0] == 0 {
            return None;
        }
        let len = bytes.iter().fold(0usize, |a, x| (a << 8) | *x as usize);
        if len < 0x80 {
            return None;
        }
        (len, 2 + n)
    };
    if hdr.checked_add(len)? != der.len() {
        return None;
    }
    der.get(hdr..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        for n in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let c = vec![7u8; n];
            assert_eq!(parse_octet_string(&octet_string(&c)), Some(&c[..]));
        }
        let mut long = octet_string(&[1; 10]);
        long.push(0);
        assert_eq!(parse_octet_string(&long), None);
        assert_eq!(parse_octet_string(&[0x04, 0x81, 0x01, 0x00]), None);
        assert_eq!(parse_octet_string(&[0x30, 0x00]), None);
        assert_eq!(parse_octet_string(&[0x04, 0x05, 0x00]), None);
        assert_eq!(parse_octet_string(&[]), None);
    }
}
