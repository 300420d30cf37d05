//! Small building blocks shared by the block manager and the engine: the "no link" sentinel, a
//! 64-bit mixer for hash buckets, and the order-preserving encoding of `f64` keys.

/// The "no link" sentinel used by every index-linked structure in this crate.
pub const NIL: u32 = u32::MAX;

/// splitmix64's finaliser: a cheap bijective 64-bit mixer. Bucket choice must not trust the
/// caller's hashes (Mooncake ids are small integers, external ids are often sequential).
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Maps an `f64` onto a `u64` whose unsigned order is the float's total order, so that heap
/// comparisons are plain integer compares. NaN never reaches here: inputs are validated.
#[inline]
pub(crate) fn ordered_bits(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// `x / block_size`, a shift when the block size is a power of two (it nearly always is):
/// a division costs tens of cycles and the step does a few per running request. A block size
/// of 0 (configurations reject it) counts as 1, so nothing here divides by zero.
#[inline]
pub(crate) fn div_block(x: u32, block_size: u32) -> u32 {
    if block_size.is_power_of_two() {
        x >> block_size.trailing_zeros()
    } else {
        x.checked_div(block_size).unwrap_or(x)
    }
}

/// `x % block_size`, a mask for powers of two; as [`div_block`], a block size of 0 counts as
/// 1 (so the remainder is 0).
#[inline]
pub(crate) fn rem_block(x: u32, block_size: u32) -> u32 {
    if block_size.is_power_of_two() {
        x & block_size.wrapping_sub(1)
    } else {
        x.checked_rem(block_size).unwrap_or(0)
    }
}

/// `ceil(tokens / block_size)` in 64 bits, as [`div_block`] a shift for powers of two (and a
/// block size of 0 counting as 1). Never overflows, whatever `tokens`.
#[inline]
pub(crate) fn blocks_for(tokens: u64, block_size: u32) -> u64 {
    let bs = u64::from(block_size);
    if block_size.is_power_of_two() {
        // `bs − 1` cannot wrap (bs ≥ 1); the quotient is at most u64::MAX / 2 when the
        // remainder can be non-zero, so adding 1 cannot saturate.
        let partial = u64::from(tokens & bs.wrapping_sub(1) != 0);
        (tokens >> block_size.trailing_zeros()).saturating_add(partial)
    } else if bs == 0 {
        tokens
    } else {
        tokens.div_ceil(bs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_bits_preserves_float_order() {
        let xs = [
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -0.0,
            0.0,
            1e-300,
            1.0,
            3.5,
            1e300,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(
                ordered_bits(w[0]) <= ordered_bits(w[1]),
                "{} vs {}",
                w[0],
                w[1]
            );
        }
        assert!(ordered_bits(-1.0) < ordered_bits(1.0));
    }

    #[test]
    fn block_arithmetic_matches_division() {
        for bs in [1u32, 2, 3, 7, 16, 100, 512, 1 << 20] {
            for x in [
                0u32,
                1,
                2,
                15,
                16,
                17,
                511,
                512,
                513,
                1_000_003,
                u32::MAX / 2,
            ] {
                assert_eq!(div_block(x, bs), x / bs, "{x} / {bs}");
                assert_eq!(
                    blocks_for(x as u64, bs),
                    (x as u64).div_ceil(bs as u64),
                    "{x} / {bs}"
                );
            }
        }
        for bs in [1u32, 2, 3, 16, 1 << 31] {
            assert_eq!(
                blocks_for(u64::MAX, bs),
                u64::MAX.div_ceil(bs as u64),
                "{bs}"
            );
            assert_eq!(
                blocks_for(u64::MAX - 1, bs),
                (u64::MAX - 1).div_ceil(bs as u64)
            );
        }
        assert_eq!(div_block(7, 0), 7, "block size 0 counts as 1");
        assert_eq!(blocks_for(7, 0), 7);
    }

    #[test]
    fn mix64_spreads_sequential_keys() {
        let mut low_bits = [0u32; 16];
        for k in 0..1600u64 {
            low_bits[(mix64(k) & 15) as usize] += 1;
        }
        assert!(
            low_bits.iter().all(|&c| (60..=140).contains(&c)),
            "{low_bits:?}"
        );
    }
}
