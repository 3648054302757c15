//! Numbers in stored values, for the atomic `incr` command.
//!
//! Values are MessagePack as the JS layer encodes them, and `cas` compares bytes: so the sum
//! is written exactly as the JS encoder would write that number (an integer that JS holds
//! exactly takes the smallest integer format, anything else a float64). Arithmetic is JS
//! arithmetic (IEEE double), so every member computes the same bytes.

/// Largest integer a JS number holds exactly.
const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

/// The number a stored value holds, or `None` when it is not a single MessagePack number.
pub fn read(bytes: &[u8]) -> Option<f64> {
    let (&marker, rest) = bytes.split_first()?;
    let be = |n: usize| -> Option<[u8; 8]> {
        if rest.len() != n {
            return None;
        }
        let mut out = [0u8; 8];
        out[8 - n..].copy_from_slice(rest);
        Some(out)
    };
    let signed = |n: usize| -> Option<f64> {
        let raw = u64::from_be_bytes(be(n)?);
        let shift = 64 - 8 * n as u32;
        Some((((raw << shift) as i64) >> shift) as f64)
    };
    match marker {
        0x00..=0x7f if rest.is_empty() => Some(f64::from(marker)),
        0xe0..=0xff if rest.is_empty() => Some(f64::from(marker as i8)),
        0xcc => Some(u64::from_be_bytes(be(1)?) as f64),
        0xcd => Some(u64::from_be_bytes(be(2)?) as f64),
        0xce => Some(u64::from_be_bytes(be(4)?) as f64),
        0xcf => Some(u64::from_be_bytes(be(8)?) as f64),
        0xd0 => signed(1),
        0xd1 => signed(2),
        0xd2 => signed(4),
        0xd3 => signed(8),
        0xca => Some(f64::from(f32::from_bits(u64::from_be_bytes(be(4)?) as u32))),
        0xcb => Some(f64::from_bits(u64::from_be_bytes(be(8)?))),
        _ => None,
    }
}

/// `n` as the JS layer's encoder writes it.
pub fn write(n: f64) -> Vec<u8> {
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE {
        // -0 is an integer to JS too: it is written as 0.
        let i = n as i64;
        if i >= 0 {
            let u = i as u64;
            return match u {
                0..=0x7f => vec![u as u8],
                0x80..=0xff => vec![0xcc, u as u8],
                0x100..=0xffff => [&[0xcd][..], &(u as u16).to_be_bytes()].concat(),
                0x1_0000..=0xffff_ffff => [&[0xce][..], &(u as u32).to_be_bytes()].concat(),
                _ => [&[0xcf][..], &u.to_be_bytes()].concat(),
            };
        }
        return match i {
            -0x20..=-1 => vec![i as u8],
            -0x80..=-0x21 => vec![0xd0, i as u8],
            -0x8000..=-0x81 => [&[0xd1][..], &(i as i16).to_be_bytes()].concat(),
            -0x8000_0000..=-0x8001 => [&[0xd2][..], &(i as i32).to_be_bytes()].concat(),
            _ => [&[0xd3][..], &i.to_be_bytes()].concat(),
        };
    }
    [&[0xcb][..], &n.to_bits().to_be_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_take_the_smallest_format_and_read_back() {
        // (number, encoding as @msgpack/msgpack writes it)
        let cases: &[(f64, &[u8])] = &[
            (0.0, &[0x00]),
            (-0.0, &[0x00]),
            (127.0, &[0x7f]),
            (128.0, &[0xcc, 0x80]),
            (65_535.0, &[0xcd, 0xff, 0xff]),
            (65_536.0, &[0xce, 0, 1, 0, 0]),
            (4_294_967_296.0, &[0xcf, 0, 0, 0, 1, 0, 0, 0, 0]),
            (-1.0, &[0xff]),
            (-32.0, &[0xe0]),
            (-33.0, &[0xd0, 0xdf]),
            (-129.0, &[0xd1, 0xff, 0x7f]),
            (-32_769.0, &[0xd2, 0xff, 0xff, 0x7f, 0xff]),
            (
                -2_147_483_649.0,
                &[0xd3, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff],
            ),
            (0.5, &[0xcb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0]),
        ];
        for &(n, bytes) in cases {
            assert_eq!(write(n), bytes, "write {n}");
            assert_eq!(
                read(bytes),
                Some(if n == 0.0 { 0.0 } else { n }),
                "read {n}"
            );
        }
        // Beyond 2^53 a number is no longer an exact integer in JS: a float64.
        assert_eq!(write(2f64.powi(60))[0], 0xcb);
        assert_eq!(read(&[0xca, 0x3f, 0xc0, 0, 0]), Some(1.5));
    }

    #[test]
    fn anything_but_one_number_is_refused() {
        for bytes in [
            &b""[..],
            &[0xa1, b'1'],
            &[0xc0],
            &[0xc3],
            &[0x91, 0x01],
            &[0x01, 0x02],
            &[0xcd, 0x01],
            &[0xcb, 0, 0, 0],
        ] {
            assert_eq!(read(bytes), None, "{bytes:?}");
        }
    }
}
