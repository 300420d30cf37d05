//! Turning a plan's block pairs into a few batched operations. CPU-only, with tests.
//!
//! A plan has three lists of [`BlockPair`]s, carried out in the plan contract's order:
//! `swap_out` (device → host), then `swap_in` (host → device), then `copies` (device →
//! device). Inside one list the pairs may run in any order or all at once, so each list becomes
//! one [`BatchedOp`]: its pairs sorted by source and coalesced into [`Run`]s of adjacent blocks
//! (`src..src+len` → `dst..dst+len`), each run at most `max_run_len` blocks long (so one run is a
//! bounded amount of work for one CUDA thread block). The CUDA executor launches one kernel per
//! non-empty op — at most three launches per plan, whatever the number of blocks and layers —
//! on one stream, so the stream order is the contract's order.
//!
//! [`BlockOps::build`] also checks what a single launch per list relies on, and returns an
//! error (never a panic) when a plan breaks it: every block id is inside its tier's pool,
//! destinations are distinct (within a list, and between `swap_in` and `copies`, which both
//! write device blocks), and no copy reads a block another copy of the same plan writes (that
//! would be a race inside one launch).

#![forbid(unsafe_code)]

use core::fmt;
use core::ops::Range;

pub use augur_core::kv::BlockPair;

/// A run of adjacent blocks: source blocks `src..src+len` go to destination blocks
/// `dst..dst+len` (same order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Run {
    /// First source block.
    pub src: u32,
    /// First destination block.
    pub dst: u32,
    /// Blocks in the run (at least 1).
    pub len: u32,
}

impl Run {
    /// The pairs this run stands for, in order.
    pub fn pairs(&self) -> impl Iterator<Item = BlockPair> + '_ {
        (0..self.len).map(|i| BlockPair {
            src: self.src + i,
            dst: self.dst + i,
        })
    }
}

/// Coalesce `pairs` in their given order: a pair that continues the previous run on both sides
/// (`src + 1`, `dst + 1`) extends it, up to `max_run_len` blocks (0 is taken as 1). Appends to
/// `out`. Expanding the runs gives back `pairs` exactly, in order.
pub fn coalesce_into(pairs: &[BlockPair], max_run_len: u32, out: &mut Vec<Run>) {
    let max = max_run_len.max(1);
    let mut cur: Option<Run> = None;
    for p in pairs {
        match cur.as_mut() {
            Some(r)
                if r.len < max
                    && r.src.checked_add(r.len) == Some(p.src)
                    && r.dst.checked_add(r.len) == Some(p.dst) =>
            {
                r.len += 1;
            }
            _ => {
                if let Some(r) = cur.take() {
                    out.push(r);
                }
                cur = Some(Run {
                    src: p.src,
                    dst: p.dst,
                    len: 1,
                });
            }
        }
    }
    if let Some(r) = cur {
        out.push(r);
    }
}

/// Which of the plan's three lists an op carries out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// Device block → host block (`Plan::swap_out`).
    SwapOut,
    /// Host block → device block (`Plan::swap_in`).
    SwapIn,
    /// Device block → device block (`Plan::copies`, copy-on-write).
    Copy,
}

impl OpKind {
    /// The order of the plan contract.
    pub const ORDER: [OpKind; 3] = [OpKind::SwapOut, OpKind::SwapIn, OpKind::Copy];

    /// The tier the op reads.
    pub const fn src_tier(self) -> Tier {
        match self {
            OpKind::SwapOut | OpKind::Copy => Tier::Device,
            OpKind::SwapIn => Tier::Host,
        }
    }

    /// The tier the op writes.
    pub const fn dst_tier(self) -> Tier {
        match self {
            OpKind::SwapIn | OpKind::Copy => Tier::Device,
            OpKind::SwapOut => Tier::Host,
        }
    }
}

/// A pool: the device's or the host's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    /// GPU memory.
    Device,
    /// Pinned host memory.
    Host,
}

/// One batched operation: all pairs of one list, as runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchedOp {
    /// Which list.
    pub kind: OpKind,
    /// Its runs, as a range of [`BlockOps::runs`].
    pub runs: Range<usize>,
    /// Blocks it moves (the number of pairs).
    pub blocks: u64,
}

/// Why a plan's block ops cannot be batched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// A pair names a block outside its tier's pool.
    BlockOutOfRange {
        /// The list.
        kind: OpKind,
        /// The tier of the block.
        tier: Tier,
        /// The block id.
        block: u32,
        /// Blocks in that pool.
        pool_blocks: u32,
    },
    /// Two pairs write the same block (of one list, or of `swap_in` and `copies`).
    DuplicateDestination {
        /// The tier of the block.
        tier: Tier,
        /// The block id.
        block: u32,
    },
    /// A copy reads a block that a copy of the same plan writes.
    CopyReadsCopyDestination {
        /// The block id.
        block: u32,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::BlockOutOfRange {
                kind,
                tier,
                block,
                pool_blocks,
            } => write!(
                f,
                "{kind:?} pair names {tier:?} block {block}, outside the pool of {pool_blocks}"
            ),
            PlanError::DuplicateDestination { tier, block } => {
                write!(f, "{tier:?} block {block} is the destination of two pairs")
            }
            PlanError::CopyReadsCopyDestination { block } => {
                write!(
                    f,
                    "a copy reads device block {block}, which another copy writes"
                )
            }
        }
    }
}

impl std::error::Error for PlanError {}

/// Default cap on a run's length in blocks (see [`BlockOps::build`]).
pub const DEFAULT_MAX_RUN_LEN: u32 = 32;

/// A plan's block ops as at most three batched ops, in the contract's order. Reusable: `build`
/// clears it, keeping its buffers.
#[derive(Clone, Debug, Default)]
pub struct BlockOps {
    runs: Vec<Run>,
    ops: Vec<BatchedOp>,
    scratch: Vec<BlockPair>,
    dsts: Vec<u32>,
}

impl BlockOps {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validate and batch a plan's three lists for pools of `device_blocks` and `host_blocks`
    /// blocks. Each list is sorted by (source, destination) and coalesced into runs of at most
    /// `max_run_len` blocks ([`DEFAULT_MAX_RUN_LEN`] is a good default). Empty lists give no op.
    /// On error `self` is left empty.
    pub fn build(
        &mut self,
        swap_out: &[BlockPair],
        swap_in: &[BlockPair],
        copies: &[BlockPair],
        device_blocks: u32,
        host_blocks: u32,
        max_run_len: u32,
    ) -> Result<(), PlanError> {
        self.runs.clear();
        self.ops.clear();
        let r = self.build_inner(
            swap_out,
            swap_in,
            copies,
            device_blocks,
            host_blocks,
            max_run_len,
        );
        if r.is_err() {
            self.runs.clear();
            self.ops.clear();
        }
        r
    }

    fn build_inner(
        &mut self,
        swap_out: &[BlockPair],
        swap_in: &[BlockPair],
        copies: &[BlockPair],
        device_blocks: u32,
        host_blocks: u32,
        max_run_len: u32,
    ) -> Result<(), PlanError> {
        let blocks_of = |t: Tier| match t {
            Tier::Device => device_blocks,
            Tier::Host => host_blocks,
        };
        let lists = [swap_out, swap_in, copies];
        for (kind, list) in OpKind::ORDER.into_iter().zip(lists) {
            for p in list {
                for (tier, block) in [(kind.src_tier(), p.src), (kind.dst_tier(), p.dst)] {
                    let pool_blocks = blocks_of(tier);
                    if block >= pool_blocks {
                        return Err(PlanError::BlockOutOfRange {
                            kind,
                            tier,
                            block,
                            pool_blocks,
                        });
                    }
                }
            }
        }
        // Host destinations (swap_out) distinct.
        check_distinct(&mut self.dsts, swap_out.iter().map(|p| p.dst), Tier::Host)?;
        // Device destinations (swap_in and copies together) distinct.
        check_distinct(
            &mut self.dsts,
            swap_in.iter().chain(copies).map(|p| p.dst),
            Tier::Device,
        )?;
        // No copy reads a copy destination (one launch runs all copies at once).
        self.dsts.clear();
        self.dsts.extend(copies.iter().map(|p| p.dst));
        self.dsts.sort_unstable();
        if let Some(p) = copies
            .iter()
            .find(|p| self.dsts.binary_search(&p.src).is_ok())
        {
            return Err(PlanError::CopyReadsCopyDestination { block: p.src });
        }
        for (kind, list) in OpKind::ORDER.into_iter().zip(lists) {
            if list.is_empty() {
                continue;
            }
            self.scratch.clear();
            self.scratch.extend_from_slice(list);
            self.scratch.sort_unstable_by_key(|p| (p.src, p.dst));
            let start = self.runs.len();
            coalesce_into(&self.scratch, max_run_len, &mut self.runs);
            self.ops.push(BatchedOp {
                kind,
                runs: start..self.runs.len(),
                blocks: list.len() as u64,
            });
        }
        Ok(())
    }

    /// The ops, in the order they must run (a subsequence of [`OpKind::ORDER`]).
    pub fn ops(&self) -> &[BatchedOp] {
        &self.ops
    }

    /// All runs, op after op.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// The runs of `op` (empty for an op of another `BlockOps`).
    pub fn runs_of(&self, op: &BatchedOp) -> &[Run] {
        self.runs.get(op.runs.clone()).unwrap_or(&[])
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

fn check_distinct(
    buf: &mut Vec<u32>,
    dsts: impl Iterator<Item = u32>,
    tier: Tier,
) -> Result<(), PlanError> {
    buf.clear();
    buf.extend(dsts);
    buf.sort_unstable();
    match buf.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(PlanError::DuplicateDestination { tier, block: w[0] }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;

    fn bp(src: u32, dst: u32) -> BlockPair {
        BlockPair { src, dst }
    }

    fn expand(runs: &[Run]) -> Vec<BlockPair> {
        runs.iter()
            .flat_map(|r| r.pairs().collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn coalesce_merges_only_adjacent_on_both_sides() {
        let pairs = [
            bp(3, 10),
            bp(4, 11),
            bp(5, 12),
            bp(6, 20),
            bp(7, 21),
            bp(9, 22),
            bp(10, 23),
        ];
        let mut runs = Vec::new();
        coalesce_into(&pairs, 32, &mut runs);
        assert_eq!(
            runs,
            vec![
                Run {
                    src: 3,
                    dst: 10,
                    len: 3
                },
                Run {
                    src: 6,
                    dst: 20,
                    len: 2
                },
                Run {
                    src: 9,
                    dst: 22,
                    len: 2
                }
            ]
        );
        // The cap splits a long run.
        runs.clear();
        coalesce_into(&pairs[..3], 2, &mut runs);
        assert_eq!(
            runs,
            vec![
                Run {
                    src: 3,
                    dst: 10,
                    len: 2
                },
                Run {
                    src: 5,
                    dst: 12,
                    len: 1
                }
            ]
        );
        // No wrap-around at u32::MAX.
        runs.clear();
        coalesce_into(&[bp(u32::MAX, 0), bp(0, 1)], 32, &mut runs);
        assert_eq!(runs.len(), 2);
    }

    #[test]
    fn coalesced_runs_cover_exactly_the_pairs_in_order() {
        let mut rng = Rng::new(7);
        for case in 0..500 {
            let n = rng.below(40) as usize;
            let mut pairs = Vec::new();
            let (mut s, mut d) = (rng.below(100) as u32, rng.below(100) as u32);
            for _ in 0..n {
                // Mostly adjacent, sometimes a jump, sometimes backwards.
                match rng.below(4) {
                    0 => {
                        s = rng.below(100) as u32;
                        d = rng.below(100) as u32;
                    }
                    1 => d += 1,
                    _ => {
                        s += 1;
                        d += 1;
                    }
                }
                pairs.push(bp(s, d));
            }
            let cap = 1 + rng.below(5) as u32;
            let mut runs = Vec::new();
            coalesce_into(&pairs, cap, &mut runs);
            assert_eq!(expand(&runs), pairs, "case {case}");
            assert!(
                runs.iter().all(|r| r.len >= 1 && r.len <= cap),
                "case {case}"
            );
            // Maximal: two consecutive runs could not have been merged unless the cap was hit.
            for w in runs.windows(2) {
                let joinable = w[0].src + w[0].len == w[1].src && w[0].dst + w[0].len == w[1].dst;
                assert!(!joinable || w[0].len == cap, "case {case}: {:?}", w);
            }
        }
    }

    #[test]
    fn ops_come_in_contract_order_and_cover_each_list() {
        let mut rng = Rng::new(11);
        let mut ops = BlockOps::new();
        for case in 0..300 {
            // Distinct destinations by construction: shuffled ranges.
            let mut host_dst: Vec<u32> = (0..64).collect();
            let mut dev_dst: Vec<u32> = (0..64).collect();
            rng.shuffle(&mut host_dst);
            rng.shuffle(&mut dev_dst);
            let n_out = rng.below(10) as usize;
            let n_in = rng.below(10) as usize;
            let n_cp = rng.below(10) as usize;
            let swap_out: Vec<_> = (0..n_out)
                .map(|i| bp(rng.below(64) as u32, host_dst[i]))
                .collect();
            let swap_in: Vec<_> = (0..n_in)
                .map(|i| bp(host_dst[63 - i], dev_dst[i]))
                .collect();
            // Copy sources are never copy destinations: take them from dev_dst's far end.
            let copies: Vec<_> = (0..n_cp)
                .map(|i| bp(dev_dst[63 - i], dev_dst[n_in + i]))
                .collect();
            ops.build(
                &swap_out,
                &swap_in,
                &copies,
                64,
                64,
                1 + rng.below(4) as u32,
            )
            .unwrap();
            let kinds: Vec<_> = ops.ops().iter().map(|o| o.kind).collect();
            let expect: Vec<_> = [
                (OpKind::SwapOut, n_out),
                (OpKind::SwapIn, n_in),
                (OpKind::Copy, n_cp),
            ]
            .into_iter()
            .filter(|&(_, n)| n > 0)
            .map(|(k, _)| k)
            .collect();
            assert_eq!(kinds, expect, "case {case}");
            for op in ops.ops() {
                let list = match op.kind {
                    OpKind::SwapOut => &swap_out,
                    OpKind::SwapIn => &swap_in,
                    OpKind::Copy => &copies,
                };
                let mut got = expand(ops.runs_of(op));
                let mut want = list.clone();
                got.sort_unstable_by_key(|p| (p.src, p.dst));
                want.sort_unstable_by_key(|p| (p.src, p.dst));
                assert_eq!(got, want, "case {case} {:?}", op.kind);
                assert_eq!(op.blocks, list.len() as u64);
            }
            // The ranges tile runs() in order.
            let mut at = 0;
            for op in ops.ops() {
                assert_eq!(op.runs.start, at);
                at = op.runs.end;
            }
            assert_eq!(at, ops.runs().len());
        }
    }

    #[test]
    fn sorting_finds_runs_the_list_order_hides() {
        let mut ops = BlockOps::new();
        let pairs = [bp(5, 7), bp(3, 5), bp(4, 6), bp(6, 8)];
        ops.build(&pairs, &[], &[], 16, 16, 32).unwrap();
        assert_eq!(
            ops.runs(),
            &[Run {
                src: 3,
                dst: 5,
                len: 4
            }]
        );
    }

    #[test]
    fn broken_plans_are_errors() {
        let mut ops = BlockOps::new();
        assert_eq!(
            ops.build(&[bp(8, 0)], &[], &[], 8, 4, 32),
            Err(PlanError::BlockOutOfRange {
                kind: OpKind::SwapOut,
                tier: Tier::Device,
                block: 8,
                pool_blocks: 8
            })
        );
        assert_eq!(
            ops.build(&[], &[bp(4, 0)], &[], 8, 4, 32),
            Err(PlanError::BlockOutOfRange {
                kind: OpKind::SwapIn,
                tier: Tier::Host,
                block: 4,
                pool_blocks: 4
            })
        );
        assert_eq!(
            ops.build(&[bp(0, 1), bp(2, 1)], &[], &[], 8, 4, 32),
            Err(PlanError::DuplicateDestination {
                tier: Tier::Host,
                block: 1
            })
        );
        assert_eq!(
            ops.build(&[], &[bp(0, 3)], &[bp(1, 3)], 8, 4, 32),
            Err(PlanError::DuplicateDestination {
                tier: Tier::Device,
                block: 3
            })
        );
        assert_eq!(
            ops.build(&[], &[], &[bp(1, 2), bp(2, 3)], 8, 4, 32),
            Err(PlanError::CopyReadsCopyDestination { block: 2 })
        );
        assert!(ops.is_empty(), "an error leaves no ops behind");
        // What the contract allows across lists is fine: a swapped-out block rewritten by a
        // swap-in, a swapped-in block read by a copy.
        ops.build(&[bp(2, 0)], &[bp(1, 2)], &[bp(2, 5)], 8, 4, 32)
            .unwrap();
        assert_eq!(ops.ops().len(), 3);
    }
}
