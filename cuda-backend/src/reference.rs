//! The CPU reference of every block op, on host byte buffers laid out as [`PoolLayout`] says:
//! the oracle the GPU tests compare against, and a plain executor for CPU-only runs.
//!
//! [`execute_pairs`] is the plain reading of the plan contract: every pair, every plane, one
//! block at a time, lists in the contract's order. [`execute_batched`] carries out a
//! [`BlockOps`] the way the CUDA kernel does (run by run, plane by plane), so the tests can check
//! that batching changes nothing. [`reshape_and_cache`] writes a step's new K and V vectors into
//! their slots, as the CUDA kernel of the same name does.

#![forbid(unsafe_code)]

use core::fmt;

use crate::batch::{BlockOps, BlockPair, OpKind, PlanError, Tier};
use crate::layout::{Kv, LayoutError, PoolLayout};

/// Why an op on caller-provided buffers or inputs was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputError {
    /// The device and host layouts are of different shapes.
    ShapeMismatch,
    /// A buffer does not have the size its layout or its arguments need.
    BufferSize {
        /// Which buffer.
        what: &'static str,
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// A stride is smaller than one token's `kv_heads × head_dim` elements.
    StrideTooSmall {
        /// Which input.
        what: &'static str,
    },
    /// Two tokens of one `reshape_and_cache` call name the same slot.
    DuplicateSlot {
        /// The slot.
        slot: u64,
    },
    /// A size does not fit in the types the kernels take.
    TooLarge(&'static str),
    /// A layout error (layer, block or slot out of range, ...).
    Layout(LayoutError),
    /// The plan's block ops break what batching needs.
    Plan(PlanError),
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::ShapeMismatch => f.write_str("device and host pools have different shapes"),
            InputError::BufferSize {
                what,
                expected,
                got,
            } => {
                write!(f, "{what}: {got} bytes given, {expected} needed")
            }
            InputError::StrideTooSmall { what } => {
                write!(f, "{what}: stride smaller than one token's heads")
            }
            InputError::DuplicateSlot { slot } => {
                write!(f, "slot {slot} is written by two tokens of one call")
            }
            InputError::TooLarge(what) => write!(f, "{what} is too large for the kernels"),
            InputError::Layout(e) => e.fmt(f),
            InputError::Plan(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for InputError {}

impl From<LayoutError> for InputError {
    fn from(e: LayoutError) -> Self {
        InputError::Layout(e)
    }
}

impl From<PlanError> for InputError {
    fn from(e: PlanError) -> Self {
        InputError::Plan(e)
    }
}

fn check_pools(
    device: &[u8],
    dl: &PoolLayout,
    host: &[u8],
    hl: &PoolLayout,
) -> Result<(), InputError> {
    if dl.shape() != hl.shape() {
        return Err(InputError::ShapeMismatch);
    }
    for (what, buf, l) in [("device pool", device, dl), ("host pool", host, hl)] {
        if buf.len() != l.total_bytes() {
            return Err(InputError::BufferSize {
                what,
                expected: l.total_bytes(),
                got: buf.len(),
            });
        }
    }
    Ok(())
}

/// Copy `len` blocks of every plane from (`src_tier`, `src`) to (`dst_tier`, `dst`).
#[allow(clippy::too_many_arguments)]
fn copy_blocks(
    src_tier: Tier,
    src: u32,
    dst_tier: Tier,
    dst: u32,
    len: u32,
    device: &mut [u8],
    dl: &PoolLayout,
    host: &mut [u8],
    hl: &PoolLayout,
) -> Result<(), InputError> {
    let bytes = dl.block_bytes() * len as usize;
    let last = |b: u32| b.checked_add(len - 1).ok_or(LayoutError::Overflow);
    for plane in 0..dl.planes() {
        let layout = |t: Tier| if t == Tier::Device { dl } else { hl };
        // Both ends of the range must be in the pool (the offset of the last block checks it).
        layout(src_tier).plane_block_offset(plane, last(src)?)?;
        layout(dst_tier).plane_block_offset(plane, last(dst)?)?;
        let so = layout(src_tier).plane_block_offset(plane, src)?;
        let dof = layout(dst_tier).plane_block_offset(plane, dst)?;
        match (src_tier, dst_tier) {
            (Tier::Device, Tier::Device) => device.copy_within(so..so + bytes, dof),
            (Tier::Host, Tier::Host) => host.copy_within(so..so + bytes, dof),
            (Tier::Device, Tier::Host) => {
                host[dof..dof + bytes].copy_from_slice(&device[so..so + bytes]);
            }
            (Tier::Host, Tier::Device) => {
                device[dof..dof + bytes].copy_from_slice(&host[so..so + bytes]);
            }
        }
    }
    Ok(())
}

/// Carry out one list of pairs, pair by pair.
pub fn apply_pairs(
    kind: OpKind,
    pairs: &[BlockPair],
    device: &mut [u8],
    dl: &PoolLayout,
    host: &mut [u8],
    hl: &PoolLayout,
) -> Result<(), InputError> {
    check_pools(device, dl, host, hl)?;
    for p in pairs {
        copy_blocks(
            kind.src_tier(),
            p.src,
            kind.dst_tier(),
            p.dst,
            1,
            device,
            dl,
            host,
            hl,
        )?;
    }
    Ok(())
}

/// The oracle: a plan's three lists carried out pair by pair, block by block, in the contract's
/// order (swap out, swap in, copies). `device` and `host` must be exactly their layouts' size.
/// On an error part of the plan may have been applied.
pub fn execute_pairs(
    swap_out: &[BlockPair],
    swap_in: &[BlockPair],
    copies: &[BlockPair],
    device: &mut [u8],
    dl: &PoolLayout,
    host: &mut [u8],
    hl: &PoolLayout,
) -> Result<(), InputError> {
    for (kind, list) in OpKind::ORDER.into_iter().zip([swap_out, swap_in, copies]) {
        apply_pairs(kind, list, device, dl, host, hl)?;
    }
    Ok(())
}

/// Carry out batched ops as the CUDA kernel does: op by op, run by run, each run as one
/// contiguous range per plane.
pub fn execute_batched(
    ops: &BlockOps,
    device: &mut [u8],
    dl: &PoolLayout,
    host: &mut [u8],
    hl: &PoolLayout,
) -> Result<(), InputError> {
    check_pools(device, dl, host, hl)?;
    for op in ops.ops() {
        for r in ops.runs_of(op) {
            if r.len == 0 {
                continue;
            }
            copy_blocks(
                op.kind.src_tier(),
                r.src,
                op.kind.dst_tier(),
                r.dst,
                r.len,
                device,
                dl,
                host,
                hl,
            )?;
        }
    }
    Ok(())
}

/// Check a slot mapping against a pool: every non-negative slot in range, no slot twice
/// (negative slots are padding and are skipped, as in vLLM).
pub fn check_slot_mapping(layout: &PoolLayout, slot_mapping: &[i64]) -> Result<(), InputError> {
    let mut slots: Vec<u64> = Vec::with_capacity(slot_mapping.len());
    for &s in slot_mapping {
        if let Ok(s) = u64::try_from(s) {
            if s >= layout.slots() {
                return Err(LayoutError::SlotOutOfRange {
                    slot: s,
                    slots: layout.slots(),
                }
                .into());
            }
            slots.push(s);
        }
    }
    slots.sort_unstable();
    match slots.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(InputError::DuplicateSlot { slot: w[0] }),
        None => Ok(()),
    }
}

/// Bytes an input of `tokens` tokens with a stride of `stride` elements must have at least.
pub fn input_bytes(
    layout: &PoolLayout,
    tokens: usize,
    stride: usize,
    what: &'static str,
) -> Result<usize, InputError> {
    let elem = layout.shape().dtype.size();
    let token_elems = layout.token_bytes() / elem;
    if stride < token_elems {
        return Err(InputError::StrideTooSmall { what });
    }
    if tokens == 0 {
        return Ok(0);
    }
    (tokens - 1)
        .checked_mul(stride)
        .and_then(|x| x.checked_add(token_elems))
        .and_then(|x| x.checked_mul(elem))
        .ok_or(InputError::TooLarge(what))
}

/// vLLM's `reshape_and_cache`: token `t`'s key (`kv_heads × head_dim` elements from element
/// `t × key_stride` of `key`) and value go to slot `slot_mapping[t]` of layer `layer`'s K and V
/// planes of `pool`; a negative slot is skipped. Strides are in elements; `key` and `value` are
/// raw element bytes of the layout's dtype.
#[allow(clippy::too_many_arguments)]
pub fn reshape_and_cache(
    pool: &mut [u8],
    layout: &PoolLayout,
    layer: u32,
    key: &[u8],
    key_stride: usize,
    value: &[u8],
    value_stride: usize,
    slot_mapping: &[i64],
) -> Result<(), InputError> {
    if pool.len() != layout.total_bytes() {
        return Err(InputError::BufferSize {
            what: "pool",
            expected: layout.total_bytes(),
            got: pool.len(),
        });
    }
    layout.plane(layer, Kv::K)?;
    let tokens = slot_mapping.len();
    for (what, buf, stride) in [("key", key, key_stride), ("value", value, value_stride)] {
        let need = input_bytes(layout, tokens, stride, what)?;
        if buf.len() < need {
            return Err(InputError::BufferSize {
                what,
                expected: need,
                got: buf.len(),
            });
        }
    }
    check_slot_mapping(layout, slot_mapping)?;
    let elem = layout.shape().dtype.size();
    let tb = layout.token_bytes();
    for (t, &s) in slot_mapping.iter().enumerate() {
        let Ok(slot) = u64::try_from(s) else { continue };
        for (kv, buf, stride) in [(Kv::K, key, key_stride), (Kv::V, value, value_stride)] {
            let o = layout.slot_offset(layer, kv, slot)?;
            let i = t * stride * elem;
            pool[o..o + tb].copy_from_slice(&buf[i..i + tb]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::DEFAULT_MAX_RUN_LEN;
    use crate::layout::{Dtype, KvShape};
    use crate::testutil::{Rng, random_plan, tag};

    fn shape(rng: &mut Rng) -> KvShape {
        KvShape {
            layers: 1 + rng.below(3) as u32,
            block_size: 1 + rng.below(4) as u32,
            kv_heads: 1 + rng.below(3) as u32,
            head_dim: 1 + rng.below(8) as u32,
            dtype: [Dtype::F16, Dtype::Bf16, Dtype::F32][rng.below(3) as usize],
        }
    }

    fn tagged(l: &PoolLayout, salt: u64, tier: u8) -> Vec<u8> {
        let mut v = vec![0u8; l.total_bytes()];
        for plane in 0..l.planes() {
            for b in 0..l.blocks() {
                let o = l.plane_block_offset(plane, b).unwrap();
                for i in 0..l.block_bytes() {
                    v[o + i] = tag(salt, tier, plane, b, i);
                }
            }
        }
        v
    }

    /// The plan contract's order, written out here rather than taken from `OpKind::ORDER`, so
    /// that a wrong `ORDER` fails these tests.
    const CONTRACT: [OpKind; 3] = [OpKind::SwapOut, OpKind::SwapIn, OpKind::Copy];

    /// (tier, block) a block's content came from.
    type Origin = (u8, u32);

    /// The independent oracle: track which original block each block's content came from
    /// (labels, no bytes), applying the lists in `order`.
    fn symbolic(
        order: [OpKind; 3],
        lists: [&[BlockPair]; 3],
        dev: u32,
        host: u32,
    ) -> (Vec<Origin>, Vec<Origin>) {
        let mut d: Vec<Origin> = (0..dev).map(|b| (0, b)).collect();
        let mut h: Vec<Origin> = (0..host).map(|b| (1, b)).collect();
        for kind in order {
            let list = lists[CONTRACT.iter().position(|&k| k == kind).unwrap()];
            let (d0, h0) = (d.clone(), h.clone()); // a list reads the state before it
            for p in list {
                let src = if kind.src_tier() == Tier::Device {
                    d0[p.src as usize]
                } else {
                    h0[p.src as usize]
                };
                if kind.dst_tier() == Tier::Device {
                    d[p.dst as usize] = src;
                } else {
                    h[p.dst as usize] = src;
                }
            }
        }
        (d, h)
    }

    /// Whether every block of `buf` holds the tagged content of the block `origin` names.
    fn holds(buf: &[u8], l: &PoolLayout, salt: u64, origin: &[Origin]) -> Result<(), String> {
        for plane in 0..l.planes() {
            for (b, &(tier, ob)) in origin.iter().enumerate() {
                let o = l.plane_block_offset(plane, b as u32).unwrap();
                for i in 0..l.block_bytes() {
                    if buf[o + i] != tag(salt, tier, plane, ob, i) {
                        return Err(format!(
                            "plane {plane} block {b} byte {i}: not ({tier}, {ob})"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn reference_and_batched_match_the_content_oracle() {
        let mut rng = Rng::new(1);
        let mut ops = BlockOps::new();
        for case in 0..400 {
            let sh = shape(&mut rng);
            let (dev, host) = (2 + rng.below(40) as u32, 2 + rng.below(40) as u32);
            let dl = PoolLayout::new(sh, dev).unwrap();
            let hl = PoolLayout::new(sh, host).unwrap();
            let salt = rng.next_u64();
            let (so, si, cp) = random_plan(&mut rng, dev, host, case % 2 == 0);
            let (want_d, want_h) = symbolic(CONTRACT, [&so, &si, &cp], dev, host);

            let (mut d, mut h) = (tagged(&dl, salt, 0), tagged(&hl, salt, 1));
            execute_pairs(&so, &si, &cp, &mut d, &dl, &mut h, &hl).unwrap();
            holds(&d, &dl, salt, &want_d)
                .unwrap_or_else(|e| panic!("case {case} pairs, device: {e}"));
            holds(&h, &hl, salt, &want_h)
                .unwrap_or_else(|e| panic!("case {case} pairs, host: {e}"));

            let cap = [1, 2, DEFAULT_MAX_RUN_LEN][case % 3];
            ops.build(&so, &si, &cp, dev, host, cap).unwrap();
            let (mut d2, mut h2) = (tagged(&dl, salt, 0), tagged(&hl, salt, 1));
            execute_batched(&ops, &mut d2, &dl, &mut h2, &hl).unwrap();
            assert!(
                d2 == d && h2 == h,
                "case {case}: batched differs from pair by pair"
            );
        }
    }

    /// The random plans exercise the order: carrying the lists out in any other order gives a
    /// wrong result on some plan, and the content check sees it (so the oracle tests would catch
    /// an executor that, say, ran the copies before the swap-outs).
    #[test]
    fn every_wrong_order_is_caught() {
        use OpKind::*;
        let wrong = [
            [SwapOut, Copy, SwapIn],
            [SwapIn, SwapOut, Copy],
            [SwapIn, Copy, SwapOut],
            [Copy, SwapOut, SwapIn],
            [Copy, SwapIn, SwapOut],
        ];
        for order in wrong {
            let mut rng = Rng::new(2);
            let mut caught = false;
            for _ in 0..100 {
                let sh = shape(&mut rng);
                let (dev, host) = (2 + rng.below(20) as u32, 2 + rng.below(20) as u32);
                let dl = PoolLayout::new(sh, dev).unwrap();
                let hl = PoolLayout::new(sh, host).unwrap();
                let salt = rng.next_u64();
                let (so, si, cp) = random_plan(&mut rng, dev, host, false);
                let lists: [&[BlockPair]; 3] = [&so, &si, &cp];
                let (want_d, want_h) = symbolic(CONTRACT, lists, dev, host);
                let (mut d, mut h) = (tagged(&dl, salt, 0), tagged(&hl, salt, 1));
                for kind in order {
                    let list = lists[CONTRACT.iter().position(|&k| k == kind).unwrap()];
                    apply_pairs(kind, list, &mut d, &dl, &mut h, &hl).unwrap();
                }
                if holds(&d, &dl, salt, &want_d).is_err() || holds(&h, &hl, salt, &want_h).is_err()
                {
                    caught = true;
                    break;
                }
            }
            assert!(caught, "order {order:?} was never caught");
        }
    }

    #[test]
    fn a_hand_made_chain() {
        // Device block 0 is swapped out to host 1, then overwritten by host block 0 (swap in),
        // then copied to device 2 (the copy must see the swapped-in content); device 1 is
        // copied to device 3.
        let sh = KvShape {
            layers: 2,
            block_size: 2,
            kv_heads: 1,
            head_dim: 2,
            dtype: Dtype::F16,
        };
        let dl = PoolLayout::new(sh, 4).unwrap();
        let hl = PoolLayout::new(sh, 2).unwrap();
        let (mut d, mut h) = (tagged(&dl, 9, 0), tagged(&hl, 9, 1));
        let so = [BlockPair { src: 0, dst: 1 }];
        let si = [BlockPair { src: 0, dst: 0 }];
        let cp = [BlockPair { src: 0, dst: 2 }, BlockPair { src: 1, dst: 3 }];
        execute_pairs(&so, &si, &cp, &mut d, &dl, &mut h, &hl).unwrap();
        holds(&h, &hl, 9, &[(1, 0), (0, 0)]).unwrap();
        holds(&d, &dl, 9, &[(1, 0), (0, 1), (1, 0), (0, 1)]).unwrap();
    }

    #[test]
    fn bad_inputs_are_errors() {
        let sh = KvShape {
            layers: 1,
            block_size: 2,
            kv_heads: 1,
            head_dim: 2,
            dtype: Dtype::F16,
        };
        let dl = PoolLayout::new(sh, 4).unwrap();
        let hl = PoolLayout::new(sh, 2).unwrap();
        let other = PoolLayout::new(KvShape { head_dim: 4, ..sh }, 2).unwrap();
        let (mut d, mut h) = (vec![0u8; dl.total_bytes()], vec![0u8; hl.total_bytes()]);
        let bp = |src, dst| BlockPair { src, dst };
        assert_eq!(
            execute_pairs(&[bp(0, 2)], &[], &[], &mut d, &dl, &mut h, &hl),
            Err(InputError::Layout(LayoutError::BlockOutOfRange {
                block: 2,
                blocks: 2
            }))
        );
        assert_eq!(
            execute_pairs(&[], &[], &[], &mut d, &dl, &mut h, &other),
            Err(InputError::ShapeMismatch)
        );
        let mut short = vec![0u8; 3];
        assert!(matches!(
            execute_pairs(&[], &[], &[], &mut short, &dl, &mut h, &hl),
            Err(InputError::BufferSize {
                what: "device pool",
                ..
            })
        ));
        let key = vec![1u8; 8];
        assert_eq!(
            reshape_and_cache(&mut d, &dl, 0, &key, 2, &key, 2, &[3, 3]),
            Err(InputError::DuplicateSlot { slot: 3 })
        );
        assert_eq!(
            reshape_and_cache(&mut d, &dl, 0, &key, 2, &key, 2, &[8]),
            Err(InputError::Layout(LayoutError::SlotOutOfRange {
                slot: 8,
                slots: 8
            }))
        );
        assert_eq!(
            reshape_and_cache(&mut d, &dl, 1, &key, 2, &key, 2, &[0]),
            Err(InputError::Layout(LayoutError::LayerOutOfRange {
                layer: 1,
                layers: 1
            }))
        );
        assert_eq!(
            reshape_and_cache(&mut d, &dl, 0, &key, 1, &key, 2, &[0]),
            Err(InputError::StrideTooSmall { what: "key" })
        );
        assert_eq!(
            reshape_and_cache(&mut d, &dl, 0, &key, 2, &key[..4], 2, &[0, 1]),
            Err(InputError::BufferSize {
                what: "value",
                expected: 8,
                got: 4
            })
        );
    }

    #[test]
    fn reshape_and_cache_writes_exactly_the_mapped_slots() {
        let mut rng = Rng::new(3);
        for case in 0..300 {
            let sh = shape(&mut rng);
            let blocks = 1 + rng.below(10) as u32;
            let l = PoolLayout::new(sh, blocks).unwrap();
            let layer = rng.below(u64::from(sh.layers)) as u32;
            let elem = sh.dtype.size();
            let te = (sh.kv_heads * sh.head_dim) as usize;
            let mut slots: Vec<i64> = (0..l.slots() as i64).collect();
            rng.shuffle(&mut slots);
            let tokens = rng.below(l.slots() + 1) as usize;
            slots.truncate(tokens);
            for s in slots.iter_mut() {
                if rng.below(5) == 0 {
                    *s = -1; // padding
                }
            }
            let (ks, vs) = (te + rng.below(3) as usize, te + rng.below(3) as usize);
            let mut key = vec![0u8; tokens * ks * elem];
            let mut value = vec![0u8; tokens * vs * elem];
            rng.fill(&mut key);
            rng.fill(&mut value);
            let mut pool = vec![0u8; l.total_bytes()];
            rng.fill(&mut pool);
            let before = pool.clone();
            reshape_and_cache(&mut pool, &l, layer, &key, ks, &value, vs, &slots).unwrap();
            // Oracle: the element formula from the layout's documentation, written out.
            let (bs, heads, dim) = (
                sh.block_size as usize,
                sh.kv_heads as usize,
                sh.head_dim as usize,
            );
            let mut expect = before.clone();
            for (t, &s) in slots.iter().enumerate() {
                if s < 0 {
                    continue;
                }
                let (block, off) = (s as usize / bs, s as usize % bs);
                for (kv, src, stride) in [(0, &key, ks), (1, &value, vs)] {
                    let plane = 2 * layer as usize + kv;
                    for h in 0..heads {
                        for x in 0..dim {
                            let e = ((((plane * blocks as usize + block) * bs + off) * heads + h)
                                * dim)
                                + x;
                            let se = t * stride + h * dim + x;
                            expect[e * elem..(e + 1) * elem]
                                .copy_from_slice(&src[se * elem..(se + 1) * elem]);
                        }
                    }
                }
            }
            assert!(pool == expect, "case {case}");
        }
    }
}
