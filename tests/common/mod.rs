//! Helpers shared by the integration tests.

#![allow(dead_code)]

use augur::core::kv::{BlockManager, KvConfig};
use augur::storage::KvBuffers;

/// Heap storage for one block manager (tests own it; the core only borrows it).
pub struct KvStore(KvBuffers);

impl KvStore {
    pub fn new(cfg: &KvConfig) -> Self {
        KvStore(KvBuffers::new(cfg).expect("valid config"))
    }

    pub fn manager(&mut self, cfg: KvConfig) -> BlockManager<'_> {
        self.0.manager(cfg).expect("storage sized by layout")
    }
}
