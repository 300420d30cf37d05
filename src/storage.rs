//! Heap-owned storage for the core's engine and block manager.
//!
//! `augur-core` never allocates: it borrows every array from its caller. This module is the
//! `std` caller's side. [`EngineBuffers`] makes one allocation per engine, a region of
//! [`augur_region::region_size`] bytes (as 64-byte aligned [`RegionUnit`]s), and
//! [`augur_region::engine_in_region`] carves the engine's arrays out of it, so this crate needs
//! no unsafe code. [`KvBuffers`] (a block manager on its own) allocates each of its four slices.
//! The simulator, the tests and the benchmarks all build their engines through this module.

use std::fmt;

use augur_core::engine::{Engine, EngineConfig, EngineConfigError, EngineInitError};
use augur_core::kv::{
    BlockManager, BlockSlot, KvConfig, KvConfigError, KvEvent, KvInitError, KvStorage, SeqSlot,
    TableChunk,
};
use augur_region::{RegionError, RegionUnit, engine_in_region, region_size, units_as_bytes};

/// Owned storage for one [`BlockManager`].
#[derive(Debug)]
pub struct KvBuffers {
    blocks: Vec<BlockSlot>,
    buckets: Vec<u32>,
    chunks: Vec<TableChunk>,
    seqs: Vec<SeqSlot>,
    events: Vec<KvEvent>,
    parents: Vec<Option<u64>>,
}

impl KvBuffers {
    /// Allocates what `cfg` needs.
    pub fn new(cfg: &KvConfig) -> Result<Self, KvConfigError> {
        let l = cfg.layout()?;
        Ok(KvBuffers {
            blocks: vec![BlockSlot::default(); l.blocks],
            buckets: vec![0; l.hash_buckets],
            chunks: vec![TableChunk::default(); l.table_chunks],
            seqs: vec![SeqSlot::default(); l.seqs],
            events: vec![KvEvent::default(); l.events],
            parents: vec![None; l.event_parents],
        })
    }

    /// Lends the buffers out.
    pub fn storage(&mut self) -> KvStorage<'_> {
        KvStorage {
            blocks: &mut self.blocks,
            hash_buckets: &mut self.buckets,
            table_chunks: &mut self.chunks,
            seqs: &mut self.seqs,
            events: &mut self.events,
            event_parents: &mut self.parents,
        }
    }

    /// A block manager over these buffers.
    pub fn manager(&mut self, cfg: KvConfig) -> Result<BlockManager<'_>, KvInitError> {
        BlockManager::new(cfg, self.storage())
    }
}

/// Owned storage for one [`Engine`]: one allocation, carved into the engine's arrays by
/// [`augur_region::engine_in_region`].
pub struct EngineBuffers {
    region: Vec<RegionUnit>,
}

impl fmt::Debug for EngineBuffers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuffers")
            .field("bytes", &(self.region.len() * RegionUnit::BYTES))
            .finish()
    }
}

impl EngineBuffers {
    /// Allocates what `cfg` needs (one region, left uninitialised until [`Self::engine`]).
    pub fn new(cfg: &EngineConfig) -> Result<Self, EngineConfigError> {
        let (size, _align) = region_size(cfg)?;
        Ok(EngineBuffers {
            region: vec![RegionUnit::UNINIT; RegionUnit::count_for(size)],
        })
    }

    /// An engine over these buffers. `cfg` may differ from the one given to [`Self::new`] as
    /// long as its storage fits; if it does not, the error is
    /// [`EngineInitError::StorageTooSmall`] for `"region"`, in bytes.
    pub fn engine(&mut self, cfg: EngineConfig) -> Result<Engine<'_>, EngineInitError> {
        engine_in_region(cfg, units_as_bytes(&mut self.region)).map_err(init_error)
    }
}

/// A [`RegionError`] as the [`EngineInitError`] that [`EngineBuffers::engine`] has always
/// returned. Only `Config`, `Init` and `TooSmall` can happen here (the region is allocated
/// aligned and carved by augur-core's own layout); the other two are reported as a region
/// that is too small, naming the reason, so they are never lost.
fn init_error(e: RegionError) -> EngineInitError {
    match e {
        RegionError::Config(c) => EngineInitError::Config(c),
        RegionError::Init(i) => i,
        RegionError::TooSmall { need, got } => EngineInitError::StorageTooSmall {
            what: "region",
            need,
            got,
        },
        RegionError::Misaligned { align } => EngineInitError::StorageTooSmall {
            what: "region (misaligned)",
            need: align,
            got: 0,
        },
        RegionError::Layout { what } => EngineInitError::StorageTooSmall {
            what,
            need: 0,
            got: 0,
        },
    }
}
