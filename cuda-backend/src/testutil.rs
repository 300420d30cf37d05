//! Helpers shared by this crate's tests, its GPU tests and its bench: a small seeded generator,
//! content tags, and random plans that keep the plan contract. Not part of the API.

#![forbid(unsafe_code)]

use crate::batch::BlockPair;

/// SplitMix64: small, seeded, reproducible.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }

    /// Random bytes, never all zero (at least one nonzero byte when `out` is not empty).
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let b = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        if let Some(first) = out.first_mut() {
            *first |= 1;
        }
    }
}

/// A 64-bit finalizer (SplitMix64's).
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The content tag of byte `byte` of block `block` of plane `plane` of pool `tier` (0 device,
/// 1 host), salted by `salt`: what a block holds before any op, so that after a plan each
/// block's bytes name the block they came from.
pub fn tag(salt: u64, tier: u8, plane: u32, block: u32, byte: usize) -> u8 {
    let word =
        mix(salt ^ (u64::from(tier) << 62) ^ (u64::from(plane) << 40) ^ (u64::from(block) << 8))
            ^ mix(byte as u64 / 8 + 1);
    word.to_le_bytes()[byte % 8]
}

/// A random plan (swap_out, swap_in, copies) for pools of `dev` and `host` blocks that keeps
/// the plan contract and is biased towards chains whose result depends on the order: a block
/// swapped out is overwritten by a swap-in or a copy; a block swapped in is read by a copy.
pub fn random_plan(
    rng: &mut Rng,
    dev: u32,
    host: u32,
    adjacent: bool,
) -> (Vec<BlockPair>, Vec<BlockPair>, Vec<BlockPair>) {
    let mut dev_ids: Vec<u32> = (0..dev).collect();
    let mut host_ids: Vec<u32> = (0..host).collect();
    if !adjacent {
        rng.shuffle(&mut dev_ids);
        rng.shuffle(&mut host_ids);
    } else {
        // Rotate so runs start anywhere, but stay mostly adjacent.
        let r = rng.below(u64::from(dev)) as usize;
        dev_ids.rotate_left(r);
        let r = rng.below(u64::from(host)) as usize;
        host_ids.rotate_left(r);
    }
    let n_out = rng.below(u64::from(host / 2) + 1) as usize;
    // Host: the first n_out ids are swap-out destinations, the rest may be swap-in sources.
    let swap_out: Vec<BlockPair> = (0..n_out)
        .map(|i| BlockPair {
            src: dev_ids[i % dev_ids.len()],
            dst: host_ids[i],
        })
        .collect();
    let in_sources = &host_ids[n_out..];
    // Device ids: swap-in destinations first (they overlap swap-out sources: order matters),
    // then copy destinations (also overlapping swap-out sources), then the rest.
    let n_in = (rng.below(u64::from(dev) / 3 + 1) as usize).min(in_sources.len());
    let swap_in: Vec<BlockPair> = (0..n_in)
        .map(|i| BlockPair {
            src: in_sources[i],
            dst: dev_ids[i],
        })
        .collect();
    let rest = dev_ids.len() - n_in;
    let n_cp = rng.below(rest as u64 / 2 + 1) as usize;
    let cp_dst = &dev_ids[n_in..n_in + n_cp];
    let cp_src_pool: Vec<u32> = dev_ids[..n_in]
        .iter()
        .chain(&dev_ids[n_in + n_cp..])
        .copied()
        .collect();
    let copies: Vec<BlockPair> = cp_dst
        .iter()
        .enumerate()
        .filter_map(|(i, &d)| {
            if cp_src_pool.is_empty() {
                return None;
            }
            // Prefer swapped-in blocks as sources (a chain through swap_in).
            let s = if i % 2 == 0 && n_in > 0 {
                dev_ids[rng.below(n_in as u64) as usize]
            } else {
                cp_src_pool[rng.below(cp_src_pool.len() as u64) as usize]
            };
            Some(BlockPair { src: s, dst: d })
        })
        .collect();
    (swap_out, swap_in, copies)
}
