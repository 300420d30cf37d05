//! Helpers shared by the integration tests: owned storage for a block manager.

#![allow(dead_code)]

use augur::core::kv::{BlockManager, BlockSlot, KvConfig, KvStorage, SeqSlot, TableChunk};

/// Heap storage for one block manager (tests own it; the core only borrows it).
pub struct KvStore {
    pub blocks: Vec<BlockSlot>,
    pub buckets: Vec<u32>,
    pub chunks: Vec<TableChunk>,
    pub seqs: Vec<SeqSlot>,
}

impl KvStore {
    pub fn new(cfg: &KvConfig) -> Self {
        let l = cfg.layout().expect("valid config");
        KvStore {
            blocks: vec![BlockSlot::default(); l.blocks],
            buckets: vec![0; l.hash_buckets],
            chunks: vec![TableChunk::default(); l.table_chunks],
            seqs: vec![SeqSlot::default(); l.seqs],
        }
    }

    pub fn manager(&mut self, cfg: KvConfig) -> BlockManager<'_> {
        BlockManager::new(
            cfg,
            KvStorage {
                blocks: &mut self.blocks,
                hash_buckets: &mut self.buckets,
                table_chunks: &mut self.chunks,
                seqs: &mut self.seqs,
            },
        )
        .expect("storage sized by layout")
    }
}
