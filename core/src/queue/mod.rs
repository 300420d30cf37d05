//! Priority queues over caller storage.
//!
//! [`IndexedHeap`] is the waiting queue: a 4-ary min-heap of items keyed by [`RankKey`] (rank,
//! then arrival), with a position index so that an item can be re-keyed or removed by its id in
//! O(log n). heapless's `BinaryHeap` cannot do either, and predictions change and requests are
//! cancelled all the time.

mod indexed_heap;

pub use indexed_heap::{HeapEntry, HeapError, IndexedHeap, RankKey};
