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
