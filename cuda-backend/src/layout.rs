//! Where each KV block lives in a pool: byte offsets and sizes, overflow-checked, errors as
//! values. CPU-only; used by the reference executor, the op batching and the CUDA pools alike.
//!
//! A pool (the device pool or the host pool) is one byte buffer of `2 × layers` *planes*, plane
//! `2 × layer + kv` (K = 0, V = 1). A plane is the pool's blocks back to back, indexed by the
//! engine's block id for that tier; a block is `block_size` token slots; a slot is
//! `kv_heads × head_dim` elements of `dtype` (the "NHD" paged layout of FlashAttention and
//! vLLM's flash backends, per layer and per K/V):
//!
//! ```text
//! offset(layer, kv, block, slot, head, dim) =
//!     ((((2·layer + kv) · blocks + block) · block_size + slot) · kv_heads + head) · head_dim + dim
//! ```
//! (in elements; multiply by the element size for bytes). The same token slot of a plane is
//! therefore at element `(block · block_size + slot) · kv_heads · head_dim`: a *slot id*
//! `block · block_size + slot` (vLLM's slot mapping) addresses it directly.

#![forbid(unsafe_code)]

use core::fmt;

/// Element type of the KV cache. Block ops and `reshape_and_cache` copy bits, so only the size
/// matters to this crate; bf16 and fp16 share the 16-bit kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// IEEE half precision (2 bytes).
    F16,
    /// bfloat16 (2 bytes).
    Bf16,
    /// IEEE single precision (4 bytes).
    F32,
}

impl Dtype {
    /// Size of one element in bytes.
    pub const fn size(self) -> usize {
        match self {
            Dtype::F16 | Dtype::Bf16 => 2,
            Dtype::F32 => 4,
        }
    }
}

/// K or V.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kv {
    /// Keys (plane `2 × layer`).
    K = 0,
    /// Values (plane `2 × layer + 1`).
    V = 1,
}

/// The model-side shape of the KV cache (the same for the device and the host pool).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KvShape {
    /// Transformer layers.
    pub layers: u32,
    /// Tokens per block (the engine's `block_size`).
    pub block_size: u32,
    /// KV heads (after grouped-query sharing; per tensor-parallel rank).
    pub kv_heads: u32,
    /// Head dimension.
    pub head_dim: u32,
    /// Element type.
    pub dtype: Dtype,
}

/// Why a layout or an offset could not be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// A dimension of the shape (or the block count) is zero.
    ZeroDimension(&'static str),
    /// A size does not fit in `usize` (or exceeds `isize::MAX` bytes, the most one allocation
    /// may have).
    Overflow,
    /// A layer index past the shape's layers.
    LayerOutOfRange {
        /// The layer asked for.
        layer: u32,
        /// The shape's layers.
        layers: u32,
    },
    /// A block id past the pool's blocks.
    BlockOutOfRange {
        /// The block asked for.
        block: u32,
        /// The pool's blocks.
        blocks: u32,
    },
    /// A slot id past the pool's `blocks × block_size` slots.
    SlotOutOfRange {
        /// The slot asked for.
        slot: u64,
        /// The pool's slots.
        slots: u64,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::ZeroDimension(what) => write!(f, "KV layout: {what} must be at least 1"),
            LayoutError::Overflow => f.write_str("KV layout: size overflows the address space"),
            LayoutError::LayerOutOfRange { layer, layers } => {
                write!(
                    f,
                    "KV layout: layer {layer} out of range (the model has {layers})"
                )
            }
            LayoutError::BlockOutOfRange { block, blocks } => {
                write!(
                    f,
                    "KV layout: block {block} out of range (the pool has {blocks})"
                )
            }
            LayoutError::SlotOutOfRange { slot, slots } => {
                write!(
                    f,
                    "KV layout: slot {slot} out of range (the pool has {slots})"
                )
            }
        }
    }
}

impl std::error::Error for LayoutError {}

/// The byte layout of one pool (device or host) of `blocks` blocks of a [`KvShape`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolLayout {
    shape: KvShape,
    blocks: u32,
    token_bytes: usize,
    block_bytes: usize,
    plane_bytes: usize,
    total_bytes: usize,
}

impl PoolLayout {
    /// The layout of a pool of `blocks` blocks of `shape`. Every size is overflow-checked, and
    /// the whole pool must fit in one allocation (at most `isize::MAX` bytes).
    pub fn new(shape: KvShape, blocks: u32) -> Result<Self, LayoutError> {
        for (v, what) in [
            (shape.layers, "layers"),
            (shape.block_size, "block_size"),
            (shape.kv_heads, "kv_heads"),
            (shape.head_dim, "head_dim"),
            (blocks, "blocks"),
        ] {
            if v == 0 {
                return Err(LayoutError::ZeroDimension(what));
            }
        }
        let mul = |a: usize, b: u32| a.checked_mul(b as usize).ok_or(LayoutError::Overflow);
        let token_bytes = mul(mul(shape.dtype.size(), shape.kv_heads)?, shape.head_dim)?;
        let block_bytes = mul(token_bytes, shape.block_size)?;
        let plane_bytes = mul(block_bytes, blocks)?;
        let planes = shape.layers.checked_mul(2).ok_or(LayoutError::Overflow)?;
        let total_bytes = mul(plane_bytes, planes)?;
        if total_bytes > isize::MAX as usize {
            return Err(LayoutError::Overflow);
        }
        Ok(PoolLayout {
            shape,
            blocks,
            token_bytes,
            block_bytes,
            plane_bytes,
            total_bytes,
        })
    }

    /// The shape.
    pub const fn shape(&self) -> KvShape {
        self.shape
    }

    /// Blocks in this pool (block ids `0..blocks`).
    pub const fn blocks(&self) -> u32 {
        self.blocks
    }

    /// Planes: `2 × layers` (cannot overflow: checked in [`PoolLayout::new`]).
    pub const fn planes(&self) -> u32 {
        self.shape.layers * 2
    }

    /// Bytes of one token slot of one plane (`kv_heads × head_dim × dtype`).
    pub const fn token_bytes(&self) -> usize {
        self.token_bytes
    }

    /// Bytes of one block of one plane.
    pub const fn block_bytes(&self) -> usize {
        self.block_bytes
    }

    /// Bytes of one plane (all blocks of one layer's K or V).
    pub const fn plane_bytes(&self) -> usize {
        self.plane_bytes
    }

    /// Bytes of the whole pool.
    pub const fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Bytes one block occupies across all planes (what a swap of one block moves).
    pub const fn block_bytes_all_planes(&self) -> usize {
        // Cannot overflow: it is at most total_bytes.
        self.block_bytes * self.planes() as usize
    }

    /// The plane index of (`layer`, `kv`).
    pub fn plane(&self, layer: u32, kv: Kv) -> Result<u32, LayoutError> {
        if layer >= self.shape.layers {
            return Err(LayoutError::LayerOutOfRange {
                layer,
                layers: self.shape.layers,
            });
        }
        Ok(layer * 2 + kv as u32)
    }

    /// Byte offset of plane `plane` (`0..planes()`).
    pub fn plane_offset(&self, plane: u32) -> Result<usize, LayoutError> {
        if plane >= self.planes() {
            return Err(LayoutError::LayerOutOfRange {
                layer: plane / 2,
                layers: self.shape.layers,
            });
        }
        // In range, so at most total_bytes: cannot overflow.
        Ok(plane as usize * self.plane_bytes)
    }

    /// Byte offset of block `block` of (`layer`, `kv`).
    pub fn block_offset(&self, layer: u32, kv: Kv, block: u32) -> Result<usize, LayoutError> {
        let plane = self.plane(layer, kv)?;
        self.plane_block_offset(plane, block)
    }

    /// Byte offset of block `block` of plane `plane`.
    pub fn plane_block_offset(&self, plane: u32, block: u32) -> Result<usize, LayoutError> {
        let base = self.plane_offset(plane)?;
        if block >= self.blocks {
            return Err(LayoutError::BlockOutOfRange {
                block,
                blocks: self.blocks,
            });
        }
        Ok(base + block as usize * self.block_bytes)
    }

    /// Slots in one plane (`blocks × block_size`).
    pub const fn slots(&self) -> u64 {
        self.blocks as u64 * self.shape.block_size as u64
    }

    /// Byte offset of token slot `slot` (`block × block_size + offset in block`) of
    /// (`layer`, `kv`): `token_bytes()` bytes from there are that token's heads.
    pub fn slot_offset(&self, layer: u32, kv: Kv, slot: u64) -> Result<usize, LayoutError> {
        let plane = self.plane(layer, kv)?;
        if slot >= self.slots() {
            return Err(LayoutError::SlotOutOfRange {
                slot,
                slots: self.slots(),
            });
        }
        // slot < blocks × block_size, so slot × token_bytes < plane_bytes: no overflow.
        Ok(plane as usize * self.plane_bytes + slot as usize * self.token_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> KvShape {
        KvShape {
            layers: 3,
            block_size: 4,
            kv_heads: 2,
            head_dim: 8,
            dtype: Dtype::Bf16,
        }
    }

    #[test]
    fn sizes_follow_the_shape() {
        let l = PoolLayout::new(shape(), 5).unwrap();
        assert_eq!(l.token_bytes(), 2 * 2 * 8);
        assert_eq!(l.block_bytes(), 4 * 32);
        assert_eq!(l.plane_bytes(), 5 * 128);
        assert_eq!(l.total_bytes(), 6 * 640);
        assert_eq!(l.planes(), 6);
        assert_eq!(l.block_bytes_all_planes(), 6 * 128);
        let f32 = PoolLayout::new(
            KvShape {
                dtype: Dtype::F32,
                ..shape()
            },
            5,
        )
        .unwrap();
        assert_eq!(f32.total_bytes(), 2 * l.total_bytes());
    }

    #[test]
    fn offsets_match_the_formula_and_tile_the_pool() {
        let l = PoolLayout::new(shape(), 5).unwrap();
        let mut seen = vec![false; l.total_bytes() / l.block_bytes()];
        for layer in 0..3 {
            for kv in [Kv::K, Kv::V] {
                for block in 0..5 {
                    let o = l.block_offset(layer, kv, block).unwrap();
                    let plane = (2 * layer + kv as u32) as usize;
                    assert_eq!(o, (plane * 5 + block as usize) * 128);
                    assert_eq!(o % l.block_bytes(), 0);
                    assert!(!seen[o / l.block_bytes()], "two blocks at one offset");
                    seen[o / l.block_bytes()] = true;
                    for s in 0..4u64 {
                        let slot = u64::from(block) * 4 + s;
                        let so = l.slot_offset(layer, kv, slot).unwrap();
                        assert_eq!(so, o + s as usize * l.token_bytes());
                    }
                }
            }
        }
        assert!(seen.iter().all(|&b| b), "the blocks tile the pool");
    }

    #[test]
    fn out_of_range_and_zero_are_errors() {
        let l = PoolLayout::new(shape(), 5).unwrap();
        assert_eq!(
            l.block_offset(3, Kv::K, 0),
            Err(LayoutError::LayerOutOfRange {
                layer: 3,
                layers: 3
            })
        );
        assert_eq!(
            l.block_offset(0, Kv::V, 5),
            Err(LayoutError::BlockOutOfRange {
                block: 5,
                blocks: 5
            })
        );
        assert_eq!(
            l.slot_offset(0, Kv::K, 20),
            Err(LayoutError::SlotOutOfRange {
                slot: 20,
                slots: 20
            })
        );
        assert_eq!(
            l.plane_offset(6).map(|_| ()),
            Err(LayoutError::LayerOutOfRange {
                layer: 3,
                layers: 3
            })
        );
        assert_eq!(
            PoolLayout::new(shape(), 0),
            Err(LayoutError::ZeroDimension("blocks"))
        );
        assert_eq!(
            PoolLayout::new(
                KvShape {
                    head_dim: 0,
                    ..shape()
                },
                1
            ),
            Err(LayoutError::ZeroDimension("head_dim"))
        );
        // The last valid offsets are in bounds.
        let last = l.block_offset(2, Kv::V, 4).unwrap();
        assert_eq!(last + l.block_bytes(), l.total_bytes());
    }

    #[test]
    fn overflow_is_an_error() {
        let big = KvShape {
            layers: u32::MAX,
            block_size: u32::MAX,
            kv_heads: u32::MAX,
            head_dim: u32::MAX,
            dtype: Dtype::F32,
        };
        assert_eq!(PoolLayout::new(big, u32::MAX), Err(LayoutError::Overflow));
        // 2^63 bytes: fits in usize but not in one allocation (isize::MAX).
        let wide = KvShape {
            layers: 1 << 20,
            block_size: 1 << 16,
            kv_heads: 1,
            head_dim: 16,
            dtype: Dtype::F32,
        };
        assert_eq!(PoolLayout::new(wide, 1 << 20), Err(LayoutError::Overflow));
    }
}
