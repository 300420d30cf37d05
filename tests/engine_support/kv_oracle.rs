//! The KV content oracle: an executor model that tracks what every device and host block
//! *contains*, independent of the block manager's data structures, and checks the plan
//! contract (`augur::core::engine::Plan`) against it.
//!
//! Content. Every token slot of every block holds nothing (never written) or one token's KV,
//! named by a content key and the token's absolute position:
//! - a token of a block covered by a request's `prompt_block_hashes` is
//!   `Prefix { salt: cache_salt, hash }`: equal hashes of one namespace are the same content,
//!   whoever computed them, while equal hashes of different namespaces are different content;
//! - any other token is `Own { uid, block }`, `uid` naming the request's incarnation (one per
//!   `add_request`, so a recomputed request writes the same content again, while a new request
//!   reusing an external id does not).
//!
//! A `filled_block_hash` the executor reports is its claim that the block's content *is* that
//! hash's content: the oracle merges the two keys (union-find), so a later request finding the
//! block by that hash reads what it expects.
//!
//! Each plan is applied in contract order — every `swap_out` pair (device → host), every
//! `swap_in` pair (host → device), every `copies` pair (device → device, as one batch), then the
//! model: each entry reads positions `0..computed_before` of its table (the executor's mirror,
//! truncated to `table_start` and extended with `Plan::blocks`) and writes positions
//! `computed_before..computed_before + tokens`, position `p` in slot `p % block_size` of block
//! `table[p / block_size]`. The checks ([`KvOracle::apply_plan`], [`KvOracle::check`]):
//! - **reads**: when an entry runs, every position below `computed_before` in its mirrored table
//!   holds exactly its own token at that position (shared prefix blocks: the shared content);
//! - **model hazards**: no slot is written twice in one plan, and no slot one entry reads is
//!   written by the model in the same plan (a shared block written in place);
//! - **copy hazards**: pairs in range; destinations distinct within each list and, for device
//!   blocks, across `swap_in` and `copies`; no `copies` source is a `copies` destination; a
//!   `swap_out` writes either fresh host blocks or, for a pause reported in `complete`, the host
//!   blocks its own request already holds (never another live request's); no host block a
//!   `swap_out` writes is read by a `swap_in` of the same plan, unless both are the same
//!   request's (a round trip, correct by the copy order: counted in `roundtrips`, an error with
//!   [`KvOracle::forbid_roundtrips`]);
//! - **no free block named**: every `swap_out` source was held before the plan (by a live
//!   request's device table, or by a paused request whose swap-out this plan carries), every
//!   `swap_in` source was in a live request's host table (or is a round trip's), and after the
//!   plan every `swap_in` / `copies` destination is in a live request's device table and every
//!   `swap_out` destination in one's host table (unless its request left the host again in the
//!   same plan: counted in `wasted_swap_outs`);
//! - **tables**: after each plan, for every live request, the table read back from the engine
//!   (`Engine::block_table`, in the tier `RequestView::kv_tier` names) equals the delta-built
//!   mirror for running requests, covers exactly its computed tokens, and its blocks hold its
//!   own tokens `0..computed_tokens` (so KV kept in place, swapped out, or cached for a later
//!   prefix hit is checked as well as KV that runs);
//! - **namespaces**: no device block is in the tables of two live requests with different
//!   `cache_salt`, and no host block is in two tables.
//!
//! Usage: [`KvOracle::on_add`] after each accepted `add_request`, [`KvOracle::apply_plan`] then
//! [`KvOracle::check`] after each `schedule`, [`KvOracle::on_complete`] after each successful
//! `complete`, [`KvOracle::on_abort`] after each `abort`. A request the oracle was not told
//! about is registered when it first runs, without content checks (its prompt hashes are
//! unknown); retired requests the oracle was not told about are noticed by their stale
//! handles.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use augur::core::engine::{
    Engine, EngineConfig, Plan, RequestDesc, RequestError, RequestHandle, RequestState,
    ScheduledEntry, StepResult,
};
use augur::core::kv::{BlockPair, Tier};

use super::compat;

/// A small fast hasher for the oracle's maps (keys are plain integers).
#[derive(Default, Clone, Copy)]
pub struct Mix(u64);

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(29) ^ i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Mix>>;
type FastSet<K> = HashSet<K, BuildHasherDefault<Mix>>;

/// What a token's KV is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Key {
    /// A token of block `block` of request incarnation `uid`, not covered by a hash.
    Own { uid: u64, block: u32 },
    /// A token of the block with this chained hash in this namespace.
    Prefix { salt: u64, hash: u64 },
}

/// Slots `from..to` of a block hold `key` at positions `pos0..`, written by request
/// incarnation `by` (for the statistics only: content is the key and the position).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Seg {
    from: u32,
    to: u32,
    key: Key,
    pos0: u64,
    by: u64,
}

/// One block's content: disjoint segments in slot order (unwritten slots are gaps).
#[derive(Clone, Default, Debug)]
struct Content {
    segs: Vec<Seg>,
}

fn push_merge(out: &mut Vec<Seg>, s: Seg) {
    if let Some(l) = out.last_mut()
        && l.to == s.from
        && l.key == s.key
        && l.by == s.by
        && l.pos0 + (l.to - l.from) as u64 == s.pos0
    {
        l.to = s.to;
        return;
    }
    out.push(s);
}

impl Content {
    fn write(&mut self, from: u32, to: u32, key: Key, pos0: u64, by: u64) {
        debug_assert!(from < to);
        let new = Seg {
            from,
            to,
            key,
            pos0,
            by,
        };
        let mut out: Vec<Seg> = Vec::with_capacity(self.segs.len() + 2);
        let mut placed = false;
        for s in self.segs.iter().copied() {
            if s.to <= from {
                push_merge(&mut out, s);
                continue;
            }
            if s.from >= to {
                if !placed {
                    push_merge(&mut out, new);
                    placed = true;
                }
                push_merge(&mut out, s);
                continue;
            }
            if s.from < from {
                push_merge(&mut out, Seg { to: from, ..s });
            }
            if !placed {
                push_merge(&mut out, new);
                placed = true;
            }
            if s.to > to {
                push_merge(
                    &mut out,
                    Seg {
                        from: to,
                        pos0: s.pos0 + (to - s.from) as u64,
                        ..s
                    },
                );
            }
        }
        if !placed {
            push_merge(&mut out, new);
        }
        self.segs = out;
    }

    /// The first slot below `n` that does not hold `want` at position `base + slot`, with what
    /// it holds instead.
    fn mismatch(
        &self,
        n: u32,
        want: Key,
        base: u64,
        canon: impl Fn(Key) -> Key,
    ) -> Option<(u32, Option<(Key, u64)>)> {
        let mut next = 0u32;
        for s in &self.segs {
            if next >= n {
                return None;
            }
            if s.to <= next {
                continue;
            }
            if s.from > next {
                return Some((next, None));
            }
            let pos = s.pos0 + (next - s.from) as u64;
            if pos != base + next as u64 || canon(s.key) != want {
                return Some((next, Some((s.key, pos))));
            }
            next = s.to;
        }
        (next < n).then_some((next, None))
    }
}

/// What the oracle knows of one live request.
#[derive(Clone, Debug)]
struct OReq {
    uid: u64,
    handle: RequestHandle,
    salt: u64,
    /// Prompt block hashes.
    hashes: Vec<u64>,
    /// Known from `on_add` (otherwise registered when it first ran; its content is unchecked).
    tracked: bool,
    /// The executor's mirror of its device table, built from plan deltas; `None` once
    /// forgotten (preempted) or before it first runs.
    mirror: Option<Vec<u32>>,
    /// Its table as last read back from the engine.
    held: Option<(Tier, Vec<u32>)>,
    /// Device blocks a pause swap-out reported in `complete` reads in the next plan.
    pending_src: Vec<u32>,
}

/// Counters of what the oracle checked (for reports and for tests that want to be sure a
/// workload reached a corner).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OracleStats {
    pub plans: u64,
    pub entries: u64,
    /// Blocks whose content an entry read and the oracle verified.
    pub blocks_read: u64,
    /// Blocks of live requests' tables verified after plans (all tiers).
    pub blocks_held_checked: u64,
    /// Of those, host blocks.
    pub host_blocks_checked: u64,
    pub swap_out_pairs: u64,
    pub swap_in_pairs: u64,
    pub copy_pairs: u64,
    /// Device blocks seen in two or more live tables at once (shared prefixes).
    pub shared_blocks: u64,
    /// Reads of a block holding KV some other request (or incarnation) computed.
    pub foreign_reads: u64,
    /// Fewest free block-table chunks seen after a plan (`u32::MAX` before the first).
    pub min_free_chunks: u32,
    /// Filled-block hash claims.
    pub claims: u64,
    /// Swap-ins of a request's own pause swap-out of the same plan.
    pub roundtrips: u64,
    /// Pause swap-outs whose request left the host in the same plan (copies never read).
    pub wasted_swap_outs: u64,
    /// Largest table (entries) seen.
    pub max_table: u64,
    /// Most computed tokens of one request seen.
    pub max_computed: u64,
}

/// The last plan's copies, for the checks after it.
#[derive(Clone, Debug, Default)]
struct Ops {
    swap_out: Vec<BlockPair>,
    swap_in: Vec<BlockPair>,
    copies: Vec<BlockPair>,
    /// Host destinations of pause swap-outs, by request.
    pause_pairs: FastMap<u32, u64>,
    /// For each swap-out pair, the requests that held its source before the plan.
    src_owners: Vec<Vec<u64>>,
    /// External ids of the entries.
    entries: FastSet<u64>,
    step: u64,
}

/// The executor model (see the module docs).
pub struct KvOracle {
    bs: u32,
    dev_n: u32,
    host_n: u32,
    dev: Vec<Content>,
    host: Vec<Content>,
    reqs: FastMap<u64, OReq>,
    parent: FastMap<Key, Key>,
    next_uid: u64,
    uid_ext: FastMap<u64, u64>,
    /// Entries of the last applied plan, by external id.
    entries: FastMap<u64, ScheduledEntry>,
    last: Ops,
    step: u64,
    pub stats: OracleStats,
    /// Also fail on a swap-in reading a host block the same plan's swap-out writes when both
    /// are the same request's (a resumed pause's round trip: correct by the copy order, but
    /// against the plan contract as documented). On by default; off only counts them in
    /// `roundtrips`.
    pub forbid_roundtrips: bool,
}

fn blocks_for(tokens: u64, bs: u32) -> u64 {
    tokens.div_ceil(bs as u64)
}

impl KvOracle {
    pub fn new(cfg: &EngineConfig) -> Self {
        KvOracle {
            bs: cfg.block_size,
            dev_n: cfg.device_blocks,
            host_n: cfg.host_blocks,
            dev: vec![Content::default(); cfg.device_blocks as usize],
            host: vec![Content::default(); cfg.host_blocks as usize],
            reqs: FastMap::default(),
            parent: FastMap::default(),
            next_uid: 1,
            uid_ext: FastMap::default(),
            entries: FastMap::default(),
            last: Ops::default(),
            step: 0,
            stats: OracleStats {
                min_free_chunks: u32::MAX,
                ..OracleStats::default()
            },
            forbid_roundtrips: true,
        }
    }

    #[track_caller]
    fn fail(&self, msg: String) -> ! {
        panic!("KV oracle, plan {}: {msg}", self.step)
    }

    fn find(&self, mut k: Key) -> Key {
        if self.parent.is_empty() {
            return k;
        }
        while let Some(&p) = self.parent.get(&k) {
            k = p;
        }
        k
    }

    fn union(&mut self, a: Key, b: Key) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent.insert(ra, rb);
        }
    }

    /// The raw content key of block `k` of `r`.
    fn key_of(r: &OReq, k: u32) -> Key {
        match r.hashes.get(k as usize) {
            Some(&hash) if r.tracked => Key::Prefix { salt: r.salt, hash },
            _ => Key::Own {
                uid: r.uid,
                block: k,
            },
        }
    }

    fn describe(&self, found: Option<(Key, u64)>) -> String {
        match found {
            None => "nothing (never written)".to_string(),
            Some((Key::Own { uid, block }, pos)) => format!(
                "token {pos} of request {} (block {block}, incarnation {uid})",
                self.uid_ext.get(&uid).copied().unwrap_or(u64::MAX)
            ),
            Some((Key::Prefix { salt, hash }, pos)) => {
                format!("token {pos} of prefix block {hash:#x} in namespace {salt}")
            }
        }
    }

    /// A request accepted by `add_request` (its namespace from the description).
    pub fn on_add(&mut self, desc: &RequestDesc<'_>, h: RequestHandle) {
        self.on_add_salted(desc, compat::salt_of(desc), h);
    }

    /// A request accepted by `add_request`, in namespace `salt`.
    pub fn on_add_salted(&mut self, desc: &RequestDesc<'_>, salt: u64, h: RequestHandle) {
        let uid = self.next_uid;
        self.next_uid += 1;
        self.uid_ext.insert(uid, desc.external_id);
        self.reqs.insert(
            desc.external_id,
            OReq {
                uid,
                handle: h,
                salt,
                hashes: desc.prompt_block_hashes.to_vec(),
                tracked: true,
                mirror: None,
                held: None,
                pending_src: vec![],
            },
        );
    }

    /// A request the caller aborted.
    pub fn on_abort(&mut self, external_id: u64) {
        self.reqs.remove(&external_id);
    }

    /// Whether the oracle holds a live request with this id.
    pub fn knows(&self, external_id: u64) -> bool {
        self.reqs.contains_key(&external_id)
    }

    /// The request with handle `h`, if live in the oracle.
    fn ext_of(&self, h: RequestHandle) -> Option<u64> {
        self.reqs
            .iter()
            .find(|(_, r)| r.handle == h)
            .map(|(&id, _)| id)
    }

    /// Results accepted by `complete`: filled-block claims, finishes, pauses (whose KV moves are
    /// read back here; a pause's swap-out is carried out by the next plan).
    pub fn on_complete(&mut self, results: &[StepResult], e: &Engine<'_>) {
        for res in results {
            let Some(h) = res.filled_block_hash else {
                continue;
            };
            let Some(ext) = self.ext_of(res.handle) else {
                continue;
            };
            let Some(en) = self.entries.get(&ext).copied() else {
                self.fail(format!("a result for {ext}, which was not in the plan"));
            };
            let end = en.computed_before as u64 + en.tokens as u64;
            let b = (end / self.bs as u64).saturating_sub(1) as u32;
            let r = &self.reqs[&ext];
            let own = self.find(Self::key_of(r, b));
            let claimed = Key::Prefix {
                salt: r.salt,
                hash: h,
            };
            self.union(own, claimed);
            self.stats.claims += 1;
        }
        for f in e.last_finished() {
            self.reqs.remove(&f.external_id);
        }
        if !compat::READBACK {
            return;
        }
        let ids: Vec<u64> = self.reqs.keys().copied().collect();
        for ext in ids {
            let h = self.reqs[&ext].handle;
            let v = match e.request(h) {
                Ok(v) => v,
                Err(RequestError::StaleHandle) => {
                    self.reqs.remove(&ext);
                    continue;
                }
                Err(x) => self.fail(format!("request({ext}): {x:?}")),
            };
            let new = v.kv_tier.map(|t| (t, compat::read_table(e, h, &v)));
            let r = self.reqs.get_mut(&ext).unwrap();
            if let (Some((Tier::Device, old)), Some((Tier::Host, _))) = (&r.held, &new) {
                // Paused with a swap-out: its device blocks are read by the next plan.
                r.pending_src.extend_from_slice(old);
            }
            r.held = new;
        }
    }

    /// Carries out `plan` (the engine's current plan) in contract order, checking hazards and
    /// every entry's reads. Call [`KvOracle::check`] right after.
    pub fn apply_plan(&mut self, plan: &Plan<'_>, e: &Engine<'_>) {
        let _ = e;
        self.step = plan.step;
        self.stats.plans += 1;
        if std::env::var_os("AUGUR_ORACLE_TRACE").is_some() {
            eprintln!(
                "plan {}: entries {:?} swap_out {:?} swap_in {:?} copies {:?} preempted {:?} \
                 dropped {:?}",
                plan.step,
                plan.entries
                    .iter()
                    .map(|x| (
                        x.external_id,
                        x.computed_before,
                        x.tokens,
                        x.table_start,
                        plan.blocks(x)
                    ))
                    .collect::<Vec<_>>(),
                plan.swap_out,
                plan.swap_in,
                plan.copies,
                plan.preempted
                    .iter()
                    .map(|x| (x.external_id, x.kind, x.cause))
                    .collect::<Vec<_>>(),
                plan.dropped
                    .iter()
                    .map(|x| x.external_id)
                    .collect::<Vec<_>>(),
            );
            let mut held: Vec<_> = self
                .reqs
                .iter()
                .map(|(k, r)| (*k, r.held.clone(), r.pending_src.clone()))
                .collect();
            held.sort_by_key(|x| x.0);
            eprintln!("  held before: {held:?}");
        }
        let (dev_n, host_n) = (self.dev_n, self.host_n);
        // What the executor believes is allocated before the plan.
        // Device block -> the requests holding it (or whose pending pause swap-out reads it).
        let mut pre_dev: FastMap<u32, Vec<u64>> = FastMap::default();
        let mut pre_host: FastMap<u32, u64> = FastMap::default();
        for (&ext, r) in &self.reqs {
            match &r.held {
                Some((Tier::Device, t)) => {
                    for &b in t {
                        pre_dev.entry(b).or_default().push(ext);
                    }
                }
                Some((Tier::Host, t)) => pre_host.extend(t.iter().map(|&b| (b, ext))),
                None => {}
            }
            for &b in &r.pending_src {
                pre_dev.entry(b).or_default().push(ext);
            }
        }

        // ----- copy hazards -----
        let distinct = |what: &str, list: &[BlockPair], src_n: u32, dst_n: u32| {
            let mut seen = FastSet::default();
            for p in list {
                if p.src >= src_n || p.dst >= dst_n {
                    self.fail(format!("{what} pair out of range: {p:?}"));
                }
                if !seen.insert(p.dst) {
                    self.fail(format!("{what} names destination {} twice", p.dst));
                }
            }
            seen
        };
        distinct("swap-out", plan.swap_out, dev_n, host_n);
        let in_dst = distinct("swap-in", plan.swap_in, host_n, dev_n);
        let copy_dst = distinct("copy", plan.copies, dev_n, dev_n);
        for p in plan.copies {
            if in_dst.contains(&p.dst) {
                self.fail(format!(
                    "device block {} is the destination of a swap-in and a copy",
                    p.dst
                ));
            }
            if copy_dst.contains(&p.src) {
                self.fail(format!(
                    "copy source {} is another copy's destination",
                    p.src
                ));
            }
        }
        if compat::READBACK {
            for p in plan.swap_out {
                if !pre_dev.contains_key(&p.src) {
                    self.fail(format!(
                        "swap-out {p:?} reads device block {}, which no live request held",
                        p.src
                    ));
                }
            }
            for p in plan.swap_in {
                if !pre_host.contains_key(&p.src) && !plan.swap_out.iter().any(|o| o.dst == p.src) {
                    self.fail(format!(
                        "swap-in {p:?} reads host block {}, which no live request held",
                        p.src
                    ));
                }
            }
        }
        // A swap-out either writes fresh host blocks (a preemption or an eviction in this plan)
        // or is a pause's swap-out reported in `complete`, into the host blocks its request
        // already holds; it never writes a host block another live request holds.
        let mut pause_pairs: FastMap<u32, u64> = FastMap::default();
        if compat::READBACK {
            for p in plan.swap_out {
                let Some(&owner) = pre_host.get(&p.dst) else {
                    continue;
                };
                if !self.reqs[&owner].pending_src.contains(&p.src) {
                    self.fail(format!(
                        "swap-out {p:?} overwrites host block {}, which holds the KV of {owner}",
                        p.dst
                    ));
                }
                pause_pairs.insert(p.dst, owner);
            }
        }
        // ----- the copies, in contract order -----
        for p in plan.swap_out {
            self.host[p.dst as usize] = self.dev[p.src as usize].clone();
        }
        for p in plan.swap_in {
            self.dev[p.dst as usize] = self.host[p.src as usize].clone();
        }
        let copied: Vec<Content> = plan
            .copies
            .iter()
            .map(|p| self.dev[p.src as usize].clone())
            .collect();
        for (p, c) in plan.copies.iter().zip(copied) {
            self.dev[p.dst as usize] = c;
        }
        self.stats.swap_out_pairs += plan.swap_out.len() as u64;
        self.stats.swap_in_pairs += plan.swap_in.len() as u64;
        self.stats.copy_pairs += plan.copies.len() as u64;

        // ----- lifetimes -----
        for r in self.reqs.values_mut() {
            r.pending_src.clear();
        }
        for p in plan.preempted {
            match self.reqs.get_mut(&p.external_id) {
                Some(r) => r.mirror = None,
                None if compat::READBACK => {
                    self.fail(format!("preempted {}, which is not live", p.external_id))
                }
                None => {}
            }
        }
        for d in plan.dropped {
            self.reqs.remove(&d.external_id);
        }

        // ----- the model: mirrors, reads, hazards, writes -----
        let bs = self.bs as u64;
        // Per block: (from, to, external id, is a write).
        let mut touch: FastMap<u32, Vec<(u32, u32, u64, bool)>> = FastMap::default();
        let mut writes: Vec<(u32, u32, u32, Key, u64, u64)> = vec![];
        self.entries.clear();
        for en in plan.entries {
            self.stats.entries += 1;
            let ext = en.external_id;
            if !self.reqs.contains_key(&ext) {
                // Not added through the oracle: register it, unchecked.
                let uid = self.next_uid;
                self.next_uid += 1;
                self.uid_ext.insert(uid, ext);
                self.reqs.insert(
                    ext,
                    OReq {
                        uid,
                        handle: en.handle,
                        salt: 0,
                        hashes: vec![],
                        tracked: false,
                        mirror: None,
                        held: None,
                        pending_src: vec![],
                    },
                );
            }
            if self.reqs[&ext].handle != en.handle {
                self.fail(format!("entry {en:?} names another incarnation's handle"));
            }
            self.entries.insert(ext, *en);
            let new = plan.blocks(en);
            let r = self.reqs.get_mut(&ext).unwrap();
            let had = r.mirror.is_some();
            let mut t = r.mirror.take().unwrap_or_default();
            if en.table_start as usize > t.len() {
                self.fail(format!(
                    "entry {en:?} starts its delta at {} but the mirrored table has {} entries{}",
                    en.table_start,
                    t.len(),
                    if had { "" } else { " (forgotten)" }
                ));
            }
            t.truncate(en.table_start as usize);
            t.extend_from_slice(new);
            let end = en.computed_before as u64 + en.tokens as u64;
            if t.len() as u64 != blocks_for(end, self.bs) {
                self.fail(format!(
                    "mirrored table of {ext} has {} entries for {end} tokens: {en:?}",
                    t.len()
                ));
            }
            if let Some(&b) = t.iter().find(|&&b| b >= dev_n) {
                self.fail(format!(
                    "table of {ext} names device block {b} out of range"
                ));
            }
            self.stats.max_table = self.stats.max_table.max(t.len() as u64);
            let r = self.reqs.get_mut(&ext).unwrap();
            r.mirror = Some(t);
            let r = &self.reqs[&ext];
            let t = r.mirror.as_ref().unwrap();
            // Reads: positions below computed_before.
            let cb = en.computed_before as u64;
            for k in 0..blocks_for(cb, self.bs) {
                let n = (cb - k * bs).min(bs) as u32;
                let b = t[k as usize];
                touch.entry(b).or_default().push((0, n, ext, false));
                if !r.tracked {
                    continue;
                }
                let want = self.find(Self::key_of(r, k as u32));
                let c = &self.dev[b as usize];
                if let Some((slot, found)) = c.mismatch(n, want, k * bs, |x| self.find(x)) {
                    self.fail(format!(
                        "entry of {ext} ({en:?}) reads token {} from device block {b} (table \
                         entry {k}, slot {slot}), which holds {}",
                        k * bs + slot as u64,
                        self.describe(found)
                    ));
                }
                self.stats.blocks_read += 1;
                if c.segs.iter().any(|s| s.by != r.uid) {
                    self.stats.foreign_reads += 1;
                }
            }
            // Writes: positions computed_before..end.
            let mut p = cb;
            while p < end {
                let k = p / bs;
                let to = end.min((k + 1) * bs);
                let b = t[k as usize];
                let (sf, st) = ((p - k * bs) as u32, (to - k * bs) as u32);
                touch.entry(b).or_default().push((sf, st, ext, true));
                writes.push((b, sf, st, Self::key_of(r, k as u32), p, r.uid));
                p = to;
            }
        }
        for (b, list) in &touch {
            if list.len() < 2 || !list.iter().any(|x| x.3) {
                continue;
            }
            for (i, w) in list.iter().enumerate().filter(|(_, x)| x.3) {
                for (j, o) in list.iter().enumerate() {
                    if i != j && w.0 < o.1 && o.0 < w.1 {
                        self.fail(format!(
                            "the model writes slots {}..{} of device block {b} for {} while {} \
                             {} slots {}..{} of it in the same plan",
                            w.0,
                            w.1,
                            w.2,
                            o.2,
                            if o.3 { "writes" } else { "reads" },
                            o.0,
                            o.1
                        ));
                    }
                }
            }
        }
        for (b, from, to, key, pos0, by) in writes {
            self.dev[b as usize].write(from, to, key, pos0, by);
        }
        // A swap-in reading a host block that a swap-out of the same plan writes: only a
        // request's own round trip (its KV swapped out, then back in, by one plan) is correct,
        // by the copy order; anything else reads another request's KV.
        let out_dst: FastMap<u32, u32> = plan.swap_out.iter().map(|p| (p.dst, p.src)).collect();
        for p in plan.swap_in {
            let Some(&dev_src) = out_dst.get(&p.src) else {
                continue;
            };
            let reader = plan
                .entries
                .iter()
                .find(|en| plan.blocks(en).contains(&p.dst))
                .map(|en| en.external_id);
            let own = compat::READBACK
                && reader.is_some_and(|y| pre_dev.get(&dev_src).is_some_and(|o| o.contains(&y)));
            if !own || self.forbid_roundtrips {
                self.fail(format!(
                    "swap-in {p:?} (for {reader:?}) reads host block {}, which swap-out \
                     ({dev_src} -> {}) of the same plan writes first (device block {dev_src} \
                     held by {:?})",
                    p.src,
                    p.src,
                    pre_dev.get(&dev_src)
                ));
            }
            self.stats.roundtrips += 1;
        }
        let src_owners: Vec<Vec<u64>> = plan
            .swap_out
            .iter()
            .map(|p| pre_dev.get(&p.src).cloned().unwrap_or_default())
            .collect();
        self.last = Ops {
            swap_out: plan.swap_out.to_vec(),
            swap_in: plan.swap_in.to_vec(),
            copies: plan.copies.to_vec(),
            pause_pairs,
            src_owners,
            entries: plan.entries.iter().map(|x| x.external_id).collect(),
            step: plan.step,
        };
    }

    /// Verifies that `table` (in `tier`) holds `ext`'s tokens `0..computed`.
    fn verify_table(&mut self, ext: u64, tier: Tier, table: &[u32], computed: u64, what: &str) {
        let r = &self.reqs[&ext];
        if !r.tracked {
            return;
        }
        let bs = self.bs as u64;
        let pool = match tier {
            Tier::Device => &self.dev,
            Tier::Host => &self.host,
        };
        let n_blocks = blocks_for(computed, self.bs);
        if (table.len() as u64) < n_blocks {
            self.fail(format!(
                "{what} table of {ext} has {} entries for {computed} computed tokens",
                table.len()
            ));
        }
        let mut checked = 0u64;
        for k in 0..n_blocks {
            let n = (computed - k * bs).min(bs) as u32;
            let b = table[k as usize];
            if b as usize >= pool.len() {
                self.fail(format!(
                    "{what} table of {ext} names {tier:?} block {b} out of range"
                ));
            }
            let want = self.find(Self::key_of(r, k as u32));
            if let Some((slot, found)) =
                pool[b as usize].mismatch(n, want, k * bs, |x| self.find(x))
            {
                self.fail(format!(
                    "{what} request {ext}: token {} in {tier:?} block {b} (table entry {k}, slot \
                     {slot}) holds {}",
                    k * bs + slot as u64,
                    self.describe(found)
                ));
            }
            checked += 1;
        }
        self.stats.blocks_held_checked += checked;
        if tier == Tier::Host {
            self.stats.host_blocks_checked += checked;
        }
    }

    /// The checks after a plan: every live request's table (read back from the engine) against
    /// the mirrors and the content, namespaces, and the allocation of the plan's destinations.
    pub fn check(&mut self, e: &Engine<'_>) {
        let ops = std::mem::take(&mut self.last);
        self.stats.min_free_chunks = self.stats.min_free_chunks.min(e.kv().free_table_chunks());
        if !compat::READBACK {
            self.check_mirrors_only(&ops);
            return;
        }
        // Device block -> (salt, external id) of its first holder; host block -> holder.
        let mut dev_owner: FastMap<u32, (u64, u64)> = FastMap::default();
        let mut host_owner: FastMap<u32, u64> = FastMap::default();
        let mut shared: FastSet<u32> = FastSet::default();
        let mut ids: Vec<u64> = self.reqs.keys().copied().collect();
        ids.sort_unstable();
        for ext in ids {
            let h = self.reqs[&ext].handle;
            let v = match e.request(h) {
                Ok(v) => v,
                Err(RequestError::StaleHandle) => {
                    self.reqs.remove(&ext);
                    continue;
                }
                Err(x) => self.fail(format!("request({ext}): {x:?}")),
            };
            if v.external_id != ext {
                self.fail(format!("handle of {ext} shows request {}", v.external_id));
            }
            let table = match v.kv_tier {
                Some(_) => compat::read_table(e, h, &v),
                None => vec![],
            };
            let computed = v.computed_tokens as u64;
            self.stats.max_computed = self.stats.max_computed.max(computed);
            if v.state == RequestState::Running {
                if v.kv_tier != Some(Tier::Device) {
                    self.fail(format!("running request {ext} holds KV in {:?}", v.kv_tier));
                }
                match &self.reqs[&ext].mirror {
                    Some(m) if *m == table => {}
                    m => self.fail(format!(
                        "running request {ext}: the engine's table {table:?} differs from the \
                         executor's mirror {m:?}"
                    )),
                }
            }
            match v.kv_tier {
                Some(tier) => {
                    if table.len() as u64 != blocks_for(computed, self.bs) {
                        self.fail(format!(
                            "request {ext} ({:?}) holds {} {tier:?} blocks for {computed} \
                             computed tokens",
                            v.state,
                            table.len()
                        ));
                    }
                    self.verify_table(ext, tier, &table, computed, &format!("{:?}", v.state));
                    let salt = self.reqs[&ext].salt;
                    match tier {
                        Tier::Device => {
                            for &b in &table {
                                match dev_owner.get(&b) {
                                    None => {
                                        dev_owner.insert(b, (salt, ext));
                                    }
                                    Some(&(s, other)) => {
                                        if s != salt {
                                            self.fail(format!(
                                                "device block {b} is shared by {other} \
                                                 (namespace {s}) and {ext} (namespace {salt})"
                                            ));
                                        }
                                        if other == ext {
                                            self.fail(format!(
                                                "device block {b} is twice in the table of {ext}"
                                            ));
                                        }
                                        shared.insert(b);
                                    }
                                }
                            }
                        }
                        Tier::Host => {
                            for &b in &table {
                                if let Some(other) = host_owner.insert(b, ext) {
                                    self.fail(format!(
                                        "host block {b} is in the tables of {other} and {ext}"
                                    ));
                                }
                            }
                        }
                    }
                }
                None => {
                    if computed != 0 {
                        self.fail(format!(
                            "request {ext} holds no KV but {computed} computed tokens"
                        ));
                    }
                }
            }
            let r = self.reqs.get_mut(&ext).unwrap();
            r.held = v.kv_tier.map(|t| (t, table));
        }
        self.stats.shared_blocks += shared.len() as u64;
        for p in &ops.swap_in {
            if !dev_owner.contains_key(&p.dst) {
                self.fail(format!(
                    "swap-in {p:?} writes device block {}, which no live request holds after the \
                     plan",
                    p.dst
                ));
            }
        }
        for p in &ops.copies {
            if !dev_owner.contains_key(&p.dst) {
                self.fail(format!(
                    "copy {p:?} writes device block {}, which no live request holds after the plan",
                    p.dst
                ));
            }
        }
        for (p, owners) in ops.swap_out.iter().zip(&ops.src_owners) {
            if host_owner.contains_key(&p.dst) {
                continue;
            }
            let left_host = |x: &u64| {
                self.reqs
                    .get(x)
                    .is_none_or(|r| r.held.as_ref().is_none_or(|(t, _)| *t != Tier::Host))
            };
            let pause_owner = ops.pause_pairs.get(&p.dst);
            if pause_owner.is_some_and(left_host)
                || (pause_owner.is_none() && owners.iter().any(left_host))
            {
                // Swapped out and back in (or its KV dropped) by the same plan: the host copy
                // is freed again (read back by a swap-in, or never read).
                self.stats.wasted_swap_outs += 1;
                continue;
            }
            self.fail(format!(
                "swap-out {p:?} writes host block {}, which no live request holds after the plan",
                p.dst
            ));
        }
    }

    /// Without read-back (older engines): the mirrors of the plan's entries, their content and
    /// namespaces.
    fn check_mirrors_only(&mut self, ops: &Ops) {
        let mut dev_owner: FastMap<u32, (u64, u64)> = FastMap::default();
        let mut ids: Vec<u64> = ops.entries.iter().copied().collect();
        ids.sort_unstable();
        for ext in ids {
            let Some(en) = self.entries.get(&ext).copied() else {
                continue;
            };
            let Some(r) = self.reqs.get(&ext) else {
                continue;
            };
            let t = r.mirror.clone().unwrap_or_default();
            let salt = r.salt;
            let end = en.computed_before as u64 + en.tokens as u64;
            self.verify_table(ext, Tier::Device, &t, end, "running");
            for &b in &t {
                match dev_owner.get(&b) {
                    None => {
                        dev_owner.insert(b, (salt, ext));
                    }
                    Some(&(s, other)) if s != salt => self.fail(format!(
                        "device block {b} is shared by {other} (namespace {s}) and {ext} \
                         (namespace {salt})"
                    )),
                    Some(_) => {}
                }
            }
        }
    }
}
