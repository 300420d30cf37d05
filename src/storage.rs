//! Heap-owned storage for the core's engine and block manager.
//!
//! `augur-core` never allocates: it borrows every array from its caller. This module is the
//! `std` caller's side: it allocates each slice once, sized by the configuration's layout, and
//! lends them to the core. The simulator, the tests and the benchmarks all build their engines
//! through it.

use augur_core::engine::{
    Dropped, Engine, EngineConfig, EngineConfigError, EngineInitError, EngineStorage, Finished,
    HashChunk, PairNode, Preemption, RequestSlot, ScheduledEntry, TenantSlot,
};
use augur_core::kv::{
    BlockManager, BlockPair, BlockSlot, KvConfig, KvConfigError, KvInitError, KvStorage, SeqSlot,
    TableChunk,
};
use augur_core::queue::HeapEntry;

/// Owned storage for one [`BlockManager`].
#[derive(Debug)]
pub struct KvBuffers {
    blocks: Vec<BlockSlot>,
    buckets: Vec<u32>,
    chunks: Vec<TableChunk>,
    seqs: Vec<SeqSlot>,
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
        })
    }

    /// Lends the buffers out.
    pub fn storage(&mut self) -> KvStorage<'_> {
        KvStorage {
            blocks: &mut self.blocks,
            hash_buckets: &mut self.buckets,
            table_chunks: &mut self.chunks,
            seqs: &mut self.seqs,
        }
    }

    /// A block manager over these buffers.
    pub fn manager(&mut self, cfg: KvConfig) -> Result<BlockManager<'_>, KvInitError> {
        BlockManager::new(cfg, self.storage())
    }
}

/// Owned storage for one [`Engine`].
#[derive(Debug)]
pub struct EngineBuffers {
    kv: KvBuffers,
    requests: Vec<RequestSlot>,
    id_buckets: Vec<u32>,
    queue_entries: Vec<HeapEntry>,
    queue_positions: Vec<u32>,
    pair_nodes: Vec<PairNode>,
    tenants: Vec<TenantSlot>,
    tenant_entries: Vec<HeapEntry>,
    tenant_positions: Vec<u32>,
    running: Vec<u32>,
    hash_chunks: Vec<HashChunk>,
    plan_entries: Vec<ScheduledEntry>,
    plan_blocks: Vec<u32>,
    swap_out: Vec<BlockPair>,
    swap_in: Vec<BlockPair>,
    copies: Vec<BlockPair>,
    preempted: Vec<Preemption>,
    dropped: Vec<Dropped>,
    finished: Vec<Finished>,
}

impl EngineBuffers {
    /// Allocates what `cfg` needs.
    pub fn new(cfg: &EngineConfig) -> Result<Self, EngineConfigError> {
        let l = cfg.layout()?;
        Ok(EngineBuffers {
            kv: KvBuffers::new(&cfg.kv_config()).map_err(EngineConfigError::Kv)?,
            requests: vec![RequestSlot::default(); l.requests],
            id_buckets: vec![0; l.id_buckets],
            queue_entries: vec![HeapEntry::default(); l.queue_entries],
            queue_positions: vec![0; l.queue_positions],
            pair_nodes: vec![PairNode::default(); l.pair_nodes],
            tenants: vec![TenantSlot::default(); l.tenants],
            tenant_entries: vec![HeapEntry::default(); l.tenant_entries],
            tenant_positions: vec![0; l.tenant_positions],
            running: vec![0; l.running],
            hash_chunks: vec![HashChunk::default(); l.hash_chunks],
            plan_entries: vec![ScheduledEntry::default(); l.plan_entries],
            plan_blocks: vec![0; l.plan_blocks],
            swap_out: vec![BlockPair::default(); l.swap_out],
            swap_in: vec![BlockPair::default(); l.swap_in],
            copies: vec![BlockPair::default(); l.copies],
            preempted: vec![Preemption::default(); l.preempted],
            dropped: vec![Dropped::default(); l.dropped],
            finished: vec![Finished::default(); l.finished],
        })
    }

    /// An engine over these buffers.
    pub fn engine(&mut self, cfg: EngineConfig) -> Result<Engine<'_>, EngineInitError> {
        Engine::new(
            cfg,
            EngineStorage {
                kv: self.kv.storage(),
                requests: &mut self.requests,
                id_buckets: &mut self.id_buckets,
                queue_entries: &mut self.queue_entries,
                queue_positions: &mut self.queue_positions,
                pair_nodes: &mut self.pair_nodes,
                tenants: &mut self.tenants,
                tenant_entries: &mut self.tenant_entries,
                tenant_positions: &mut self.tenant_positions,
                running: &mut self.running,
                hash_chunks: &mut self.hash_chunks,
                plan_entries: &mut self.plan_entries,
                plan_blocks: &mut self.plan_blocks,
                swap_out: &mut self.swap_out,
                swap_in: &mut self.swap_in,
                copies: &mut self.copies,
                preempted: &mut self.preempted,
                dropped: &mut self.dropped,
                finished: &mut self.finished,
            },
        )
    }
}
