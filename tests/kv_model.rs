//! Random operation sequences on the block manager, checked after every step against a plain
//! `std` reference model (DESIGN.md section 3 invariants): every result must match the model's
//! exactly (block ids, copy pairs, errors), `audit` must pass (conservation per tier, each
//! block in exactly one state, ref count = tables holding it, tables cover their tokens, hash
//! index consistent), counters must match, and every live table must read back as the model's.
//! Stale and forged handles are thrown in to check they never alias a live sequence.
//!
//! `AUGUR_SOAK=1` multiplies the case count for a long soak.

mod common;

use std::collections::{HashMap, VecDeque};

use augur::core::kv::{
    AppendOutcome, BlockPair, KvConfig, KvCounters, KvError, PrefixMatch, SeqHandle, SeqInfo,
    TABLE_CHUNK_LEN, Tier, TierCounts,
};
use common::KvStore;
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct MSeq {
    tier: Tier,
    tokens: u32,
    table: Vec<u32>,
}

/// The reference: vectors, deques and a hash map, mirroring the documented policy (uncached
/// blocks first, most recently freed first; then the least recently freed cached block;
/// tail-first release; LIFO slots).
#[derive(Clone, Debug)]
struct Model {
    cfg: KvConfig,
    refc: Vec<u32>,
    hash: Vec<Option<u64>>,
    /// Uncached free device blocks; the last is taken first.
    free_dev: Vec<u32>,
    cached: VecDeque<u32>,
    free_host: VecDeque<u32>,
    index: HashMap<u64, u32>,
    seqs: Vec<Option<MSeq>>,
    gens: Vec<u32>,
    free_slots: Vec<u32>,
    chunks_free: u32,
    hits: u64,
    misses: u64,
    evictions: u64,
    cow: u64,
    out: u64,
    inn: u64,
    reclaimed: u64,
}

fn chunks(len: u32) -> u32 {
    len.div_ceil(TABLE_CHUNK_LEN as u32)
}

impl Model {
    fn new(cfg: KvConfig) -> Self {
        let n = cfg.device_blocks;
        let total = n + cfg.host_blocks;
        Model {
            cfg,
            refc: vec![0; total as usize],
            hash: vec![None; total as usize],
            free_dev: (0..n).rev().collect(),
            cached: VecDeque::new(),
            free_host: (n..total).collect(),
            index: HashMap::new(),
            seqs: vec![None; cfg.max_seqs as usize],
            gens: vec![1; cfg.max_seqs as usize],
            free_slots: (0..cfg.max_seqs).rev().collect(),
            chunks_free: cfg.table_chunks,
            hits: 0,
            misses: 0,
            evictions: 0,
            cow: 0,
            out: 0,
            inn: 0,
            reclaimed: 0,
        }
    }

    fn slot(&self, h: SeqHandle) -> Result<usize, KvError> {
        let raw = h.to_raw();
        let (i, g) = (raw as u32 as usize, (raw >> 32) as u32);
        match self.seqs.get(i) {
            Some(Some(_)) if self.gens[i] == g => Ok(i),
            _ => Err(KvError::StaleHandle),
        }
    }

    fn available(&self) -> u32 {
        (self.free_dev.len() + self.cached.len()) as u32
    }

    fn alloc_dev(&mut self) -> u32 {
        let b = match self.free_dev.pop() {
            Some(b) => b,
            None => {
                let b = self.cached.pop_front().unwrap();
                let h = self.hash[b as usize].take().unwrap();
                self.index.remove(&h);
                self.evictions += 1;
                b
            }
        };
        self.refc[b as usize] = 1;
        b
    }

    fn release(&mut self, b: u32) {
        self.refc[b as usize] -= 1;
        if self.refc[b as usize] > 0 {
            return;
        }
        if b < self.cfg.device_blocks {
            if self.hash[b as usize].is_some() {
                self.cached.push_back(b);
            } else {
                self.free_dev.push(b);
            }
        } else {
            self.hash[b as usize] = None;
            self.free_host.push_back(b);
        }
    }

    fn take_cached(&mut self, b: u32) {
        if self.refc[b as usize] == 0 {
            let pos = self.cached.iter().position(|&x| x == b).unwrap();
            self.cached.remove(pos);
        }
        self.refc[b as usize] += 1;
    }

    fn register(&mut self, b: u32, h: u64) {
        self.hash[b as usize] = Some(h);
        self.index.insert(h, b);
    }

    fn create(&mut self) -> Result<SeqHandle, KvError> {
        let i = self.free_slots.pop().ok_or(KvError::OutOfSeqSlots)?;
        self.seqs[i as usize] = Some(MSeq {
            tier: Tier::Device,
            tokens: 0,
            table: vec![],
        });
        Ok(SeqHandle::from_raw(
            ((self.gens[i as usize] as u64) << 32) | i as u64,
        ))
    }

    fn lookup(&self, hashes: &[u64]) -> PrefixMatch {
        let mut m = PrefixMatch::default();
        if !self.cfg.prefix_caching {
            return m;
        }
        for h in hashes {
            match self.index.get(h) {
                Some(&b) => {
                    m.blocks += 1;
                    if self.refc[b as usize] == 0 {
                        m.idle += 1;
                    }
                }
                None => break,
            }
        }
        m
    }

    fn attach(&mut self, h: SeqHandle, hashes: &[u64]) -> Result<u32, KvError> {
        let i = self.slot(h)?;
        let s = self.seqs[i].as_ref().unwrap();
        if s.tier != Tier::Device {
            return Err(KvError::WrongTier);
        }
        if s.tokens != 0 {
            return Err(KvError::NotEmpty);
        }
        let m = self.lookup(hashes).blocks;
        if chunks(m) > self.chunks_free {
            return Err(KvError::OutOfTableChunks);
        }
        let mut table = vec![];
        for hh in &hashes[..m as usize] {
            let b = self.index[hh];
            self.take_cached(b);
            table.push(b);
        }
        self.chunks_free -= chunks(m);
        let s = self.seqs[i].as_mut().unwrap();
        s.table = table;
        s.tokens = m * self.cfg.block_size;
        self.hits += m as u64;
        self.misses += (hashes.len() as u32 - m) as u64;
        Ok(m)
    }

    fn append(&mut self, h: SeqHandle, n: u32) -> Result<AppendOutcome, KvError> {
        let i = self.slot(h)?;
        let s = self.seqs[i].clone().unwrap();
        if s.tier != Tier::Device {
            return Err(KvError::WrongTier);
        }
        let bs = self.cfg.block_size;
        let new_total = s.tokens + n;
        let len = s.table.len() as u32;
        let (fresh, cow) = if new_total <= s.tokens {
            (0, false)
        } else {
            let cow =
                !s.tokens.is_multiple_of(bs) && self.refc[*s.table.last().unwrap() as usize] > 1;
            (new_total.div_ceil(bs) - len, cow)
        };
        let need = fresh + cow as u32;
        let available = self.available();
        if need > available {
            return Err(KvError::OutOfDeviceBlocks { need, available });
        }
        let extra = chunks(len + fresh) - chunks(len);
        if extra > self.chunks_free {
            return Err(KvError::OutOfTableChunks);
        }
        self.chunks_free -= extra;
        let mut out = AppendOutcome {
            first_changed: len,
            changed: fresh,
            copy: None,
        };
        let mut table = s.table.clone();
        if cow {
            let old = *table.last().unwrap();
            let new = self.alloc_dev();
            *table.last_mut().unwrap() = new;
            self.release(old);
            self.cow += 1;
            out.first_changed = len - 1;
            out.changed += 1;
            out.copy = Some(BlockPair { src: old, dst: new });
        }
        for _ in 0..fresh {
            let b = self.alloc_dev();
            table.push(b);
        }
        let s = self.seqs[i].as_mut().unwrap();
        s.table = table;
        s.tokens = new_total;
        Ok(out)
    }

    fn set_hash(&mut self, h: SeqHandle, block: u32, hash: u64) -> Result<bool, KvError> {
        let i = self.slot(h)?;
        let s = self.seqs[i].as_ref().unwrap();
        if s.tier != Tier::Device {
            return Err(KvError::WrongTier);
        }
        if block >= s.tokens / self.cfg.block_size {
            return Err(KvError::BlockNotFull);
        }
        let b = s.table[block as usize];
        if let Some(existing) = self.hash[b as usize] {
            return if existing == hash {
                Ok(false)
            } else {
                Err(KvError::HashConflict)
            };
        }
        if !self.cfg.prefix_caching || self.index.contains_key(&hash) {
            return Ok(false);
        }
        self.register(b, hash);
        Ok(true)
    }

    fn fork(&mut self, h: SeqHandle) -> Result<SeqHandle, KvError> {
        let i = self.slot(h)?;
        let s = self.seqs[i].clone().unwrap();
        if s.tier != Tier::Device {
            return Err(KvError::WrongTier);
        }
        if self.free_slots.is_empty() {
            return Err(KvError::OutOfSeqSlots);
        }
        let need = chunks(s.table.len() as u32);
        if need > self.chunks_free {
            return Err(KvError::OutOfTableChunks);
        }
        self.chunks_free -= need;
        let child = self.create()?;
        for &b in &s.table {
            self.refc[b as usize] += 1;
        }
        self.seqs[child.index() as usize] = Some(s);
        Ok(child)
    }

    fn free(&mut self, h: SeqHandle) -> Result<(), KvError> {
        let i = self.slot(h)?;
        let s = self.seqs[i].take().unwrap();
        for &b in s.table.iter().rev() {
            self.release(b);
        }
        self.chunks_free += chunks(s.table.len() as u32);
        self.gens[i] = if self.gens[i] == u32::MAX {
            1
        } else {
            self.gens[i] + 1
        };
        self.free_slots.push(i as u32);
        Ok(())
    }

    fn swap_out(&mut self, h: SeqHandle, buf: usize) -> Result<Vec<BlockPair>, KvError> {
        let i = self.slot(h)?;
        let s = self.seqs[i].clone().unwrap();
        if s.tier != Tier::Device {
            return Err(KvError::WrongTier);
        }
        let n = s.table.len() as u32;
        if buf < n as usize {
            return Err(KvError::BufferTooSmall { need: n });
        }
        let available = self.free_host.len() as u32;
        if n > available {
            return Err(KvError::OutOfHostBlocks { need: n, available });
        }
        let nd = self.cfg.device_blocks;
        let mut pairs = vec![];
        let mut table = s.table.clone();
        for entry in table.iter_mut().rev() {
            let dev = *entry;
            let host = self.free_host.pop_front().unwrap();
            self.refc[host as usize] = 1;
            self.hash[host as usize] = self.hash[dev as usize];
            pairs.push(BlockPair {
                src: dev,
                dst: host - nd,
            });
            self.release(dev);
            *entry = host;
        }
        self.out += n as u64;
        let s = self.seqs[i].as_mut().unwrap();
        s.table = table;
        s.tier = Tier::Host;
        Ok(pairs)
    }

    fn swap_in(&mut self, h: SeqHandle, buf: usize) -> Result<Vec<BlockPair>, KvError> {
        let i = self.slot(h)?;
        let s = self.seqs[i].clone().unwrap();
        if s.tier != Tier::Host {
            return Err(KvError::WrongTier);
        }
        let n = s.table.len() as u32;
        if buf < n as usize {
            return Err(KvError::BufferTooSmall { need: n });
        }
        let available = self.available();
        if n > available {
            return Err(KvError::OutOfDeviceBlocks { need: n, available });
        }
        let nd = self.cfg.device_blocks;
        let caching = self.cfg.prefix_caching;
        let mut pairs = vec![];
        let mut table = s.table.clone();
        for entry in table.iter_mut().rev() {
            let host = *entry;
            let hh = self.hash[host as usize];
            let cached = hh
                .filter(|_| caching)
                .and_then(|x| self.index.get(&x).copied());
            let dev = match cached {
                Some(b) => {
                    self.take_cached(b);
                    self.reclaimed += 1;
                    b
                }
                None => {
                    let b = self.alloc_dev();
                    pairs.push(BlockPair {
                        src: host - nd,
                        dst: b,
                    });
                    if let (Some(x), true) = (hh, caching) {
                        self.register(b, x);
                    }
                    b
                }
            };
            self.release(host);
            *entry = dev;
        }
        self.inn += pairs.len() as u64;
        let s = self.seqs[i].as_mut().unwrap();
        s.table = table;
        s.tier = Tier::Device;
        Ok(pairs)
    }

    fn counters(&self) -> KvCounters {
        let n = self.cfg.device_blocks;
        let m = self.cfg.host_blocks;
        KvCounters {
            device: TierCounts {
                total: n,
                free_uncached: self.free_dev.len() as u32,
                free_cached: self.cached.len() as u32,
                in_use: n - self.available(),
            },
            host: TierCounts {
                total: m,
                free_uncached: self.free_host.len() as u32,
                free_cached: 0,
                in_use: m - self.free_host.len() as u32,
            },
            prefix_hit_blocks: self.hits,
            prefix_miss_blocks: self.misses,
            evictions: self.evictions,
            cow_copies: self.cow,
            swapped_out_blocks: self.out,
            swapped_in_blocks: self.inn,
            swap_in_reclaimed: self.reclaimed,
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Create,
    Attach {
        seq: usize,
        fam: u64,
        len: usize,
    },
    Append {
        seq: usize,
        n: u32,
    },
    SetHash {
        seq: usize,
        block: u32,
        wrong_family: bool,
    },
    Fork {
        seq: usize,
    },
    Free {
        seq: usize,
    },
    SwapOut {
        seq: usize,
        buf: usize,
    },
    SwapIn {
        seq: usize,
        buf: usize,
    },
    Lookup {
        fam: u64,
        len: usize,
    },
    Forged {
        seq: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Create),
        2 => (any::<usize>(), 0..3u64, 0..6usize).prop_map(|(seq, fam, len)| Op::Attach { seq, fam, len }),
        6 => (any::<usize>(), 0..9u32).prop_map(|(seq, n)| Op::Append { seq, n }),
        4 => (any::<usize>(), 0..6u32, prop::bool::weighted(0.1))
            .prop_map(|(seq, block, wrong_family)| Op::SetHash { seq, block, wrong_family }),
        1 => any::<usize>().prop_map(|seq| Op::Fork { seq }),
        2 => any::<usize>().prop_map(|seq| Op::Free { seq }),
        2 => (any::<usize>(), 0..12usize).prop_map(|(seq, buf)| Op::SwapOut { seq, buf }),
        2 => (any::<usize>(), 0..12usize).prop_map(|(seq, buf)| Op::SwapIn { seq, buf }),
        1 => (0..3u64, 0..6usize).prop_map(|(fam, len)| Op::Lookup { fam, len }),
        1 => any::<usize>().prop_map(|seq| Op::Forged { seq }),
    ]
}

fn config() -> impl Strategy<Value = KvConfig> {
    (
        1..=4u32,
        1..=12u32,
        0..=8u32,
        1..=5u32,
        prop::option::of(1..=4u32),
        any::<bool>(),
    )
        .prop_map(|(bs, n, m, seqs, chunks, caching)| {
            let mut c = KvConfig::new(bs, n, m, seqs);
            if let Some(ch) = chunks {
                c.table_chunks = ch;
            }
            c.prefix_caching = caching;
            c
        })
}

fn hashes(fam: u64, len: usize) -> Vec<u64> {
    (0..len as u64).map(|i| (fam << 32) | i).collect()
}

fn cases() -> u32 {
    if std::env::var_os("AUGUR_SOAK").is_some() {
        20_000
    } else {
        300
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn block_manager_matches_reference_model(cfg in config(), ops in prop::collection::vec(op(), 1..80)) {
        let mut store = KvStore::new(&cfg);
        let mut real = store.manager(cfg);
        let mut model = Model::new(cfg);
        // Every handle ever issued (stale ones included) and its hash family.
        let mut handles: Vec<(SeqHandle, u64)> = vec![];
        let pick = |handles: &Vec<(SeqHandle, u64)>, k: usize| handles.get(k % handles.len().max(1)).copied();
        let mut scratch = vec![0u32; (cfg.device_blocks + cfg.host_blocks) as usize];
        let mut buf = [BlockPair::default(); 16];
        for (step, op) in ops.iter().enumerate() {
            match op.clone() {
                Op::Create => {
                    let (a, b) = (real.create_seq(), model.create());
                    prop_assert_eq!(a, b);
                    if let Ok(h) = a { handles.push((h, step as u64 % 3)); }
                }
                Op::Attach { seq, fam, len } => if let Some((h, _)) = pick(&handles, seq) {
                    let hs = hashes(fam, len);
                    prop_assert_eq!(real.attach_prefix(h, &hs), model.attach(h, &hs));
                },
                Op::Append { seq, n } => if let Some((h, _)) = pick(&handles, seq) {
                    prop_assert_eq!(real.append_tokens(h, n), model.append(h, n));
                },
                Op::SetHash { seq, block, wrong_family } => if let Some((h, fam)) = pick(&handles, seq) {
                    let fam = if wrong_family { fam + 7 } else { fam };
                    let hash = (fam << 32) | block as u64;
                    prop_assert_eq!(real.set_block_hash(h, block, hash), model.set_hash(h, block, hash));
                },
                Op::Fork { seq } => if let Some((h, fam)) = pick(&handles, seq) {
                    let (a, b) = (real.fork(h), model.fork(h));
                    prop_assert_eq!(a, b);
                    if let Ok(c) = a { handles.push((c, fam)); }
                },
                Op::Free { seq } => if let Some((h, _)) = pick(&handles, seq) {
                    prop_assert_eq!(real.free_seq(h), model.free(h));
                },
                Op::SwapOut { seq, buf: len } => if let Some((h, _)) = pick(&handles, seq) {
                    let a = real.swap_out(h, &mut buf[..len]).map(|n| buf[..n as usize].to_vec());
                    prop_assert_eq!(a, model.swap_out(h, len));
                },
                Op::SwapIn { seq, buf: len } => if let Some((h, _)) = pick(&handles, seq) {
                    let a = real.swap_in(h, &mut buf[..len]).map(|n| buf[..n as usize].to_vec());
                    prop_assert_eq!(a, model.swap_in(h, len));
                },
                Op::Lookup { fam, len } => {
                    let hs = hashes(fam, len);
                    prop_assert_eq!(real.lookup_prefix(&hs), model.lookup(&hs));
                }
                Op::Forged { seq } => if let Some((h, _)) = pick(&handles, seq) {
                    // Same slot, a generation never issued: must be rejected everywhere.
                    let forged = SeqHandle::from_raw(h.to_raw().wrapping_add(1 << 40));
                    prop_assert_eq!(real.append_tokens(forged, 1), Err(KvError::StaleHandle));
                    prop_assert_eq!(real.seq_info(forged), Err(KvError::StaleHandle));
                },
            }
            prop_assert_eq!(real.audit(&mut scratch), Ok(()), "after {:?}", op);
            prop_assert_eq!(real.counters(), model.counters(), "after {:?}", op);
            for &(h, _) in &handles {
                let info = real.seq_info(h);
                match model.slot(h) {
                    Ok(i) => {
                        let s = model.seqs[i].as_ref().unwrap();
                        prop_assert_eq!(info, Ok(SeqInfo { tier: s.tier, num_blocks: s.table.len() as u32, num_tokens: s.tokens }));
                        let offset = if s.tier == Tier::Host { cfg.device_blocks } else { 0 };
                        let expect: Vec<u32> = s.table.iter().map(|b| b - offset).collect();
                        let mut got = vec![0u32; expect.len() + 2];
                        let n = real.read_table(h, 0, &mut got).unwrap();
                        got.truncate(n);
                        prop_assert_eq!(got, expect);
                    }
                    Err(e) => prop_assert_eq!(info, Err(e)),
                }
            }
        }
    }
}
