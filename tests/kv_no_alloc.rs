//! The block manager never allocates after construction: thousands of operations of every
//! kind run under a counting global allocator that must see zero allocations.

#[path = "common/alloc_counter.rs"]
mod alloc_counter;
mod common;

use alloc_counter::{CountingAllocator, count_allocations};
use augur::core::kv::{BlockPair, KvConfig};
use common::KvStore;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn block_manager_operations_allocate_nothing() {
    let cfg = KvConfig::new(16, 512, 256, 64);
    let mut store = KvStore::new(&cfg);
    let mut pairs = [BlockPair::default(); 512];
    let mut table = [0u32; 512];
    let mut m = store.manager(cfg);
    let (ops, allocations) = count_allocations(|| {
        let mut ops = 0u64;
        let mut live = [None; 8];
        for round in 0..2_000u64 {
            let k = (round % 8) as usize;
            match live[k].take() {
                None => {
                    let s = m.create_seq().unwrap();
                    let hashes = [1u64, 2, 3, 4 + round % 3];
                    m.attach_prefix(s, &hashes).unwrap();
                    m.append_tokens(s, 40 + (round % 50) as u32).unwrap();
                    for b in 0..m.seq_info(s).unwrap().num_tokens / 16 {
                        let _ = m.set_block_hash(
                            s,
                            b,
                            1 + b as u64 + if b >= 3 { round % 3 } else { 0 },
                        );
                    }
                    live[k] = Some(s);
                    ops += 4;
                }
                Some(s) => {
                    match round % 5 {
                        0 => {
                            let child = m.fork(s).unwrap();
                            m.append_tokens(child, 1).unwrap();
                            m.free_seq(child).unwrap();
                            live[k] = Some(s);
                        }
                        1 => {
                            m.swap_out(s, &mut pairs).unwrap();
                            m.swap_in(s, &mut pairs).unwrap();
                            live[k] = Some(s);
                        }
                        2 => {
                            let n = m.read_table(s, 0, &mut table).unwrap();
                            assert!(n > 0);
                            m.append_tokens(s, 17).unwrap();
                            live[k] = Some(s);
                        }
                        _ => m.free_seq(s).unwrap(),
                    }
                    ops += 3;
                }
            }
            let _ = m.counters();
            let _ = m.lookup_prefix(&[1, 2, 3]);
        }
        ops
    });
    assert!(ops > 5_000, "exercised {ops} operations");
    assert_eq!(allocations, 0, "block manager allocated after construction");
    // The counter itself works: a Vec allocates.
    let (_, n) = count_allocations(|| std::hint::black_box(vec![1u8; 64]));
    assert!(n >= 1);
}
