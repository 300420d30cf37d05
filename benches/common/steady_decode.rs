//! The steady-state decode workload, shared by `benches/step.rs` (the Rust step) and
//! `ffi/benches/ffi_step.rs` (the same step through the C ABI), which include this file with
//! `#[path]` so that both measure exactly the same engine states.
//!
//! R running requests decode one token per step and W wait, both counts constant:
//! - prompts are 512 tokens (32 blocks of 16), the device has 65,536 blocks, `max_running` is R
//!   and the token budget R + (8 + R/32) × 512, so every running request decodes every step
//!   and 8 + R/32 admissions per step (well above the ~R/100 finishes) can prefill their
//!   whole prompt;
//! - output lengths are uniform in 1..=199 (mean 100), so about 1% of the running requests
//!   finish per step; each finished request is replaced at once by a new waiting request, and
//!   the next step admits as many from the head of the queue (a 512-token prefill each). So an
//!   iteration measures what a serving loop pays per step at steady state: R decodes (a new
//!   block every 16 tokens), ~R/100 finishes (freeing ~38 blocks each), ~R/100 arrivals
//!   (an O(log W) heap push each) and admissions (heap pop, 32-block allocation, full table);
//! - every request is predicted at 256 tokens (above every actual output): with exact
//!   predictions SPRPT would admit the shortest of the W waiting requests first, and the mix
//!   would drift (with W = 10^6, the finish rate changes over the run). SPRPT still ranks
//!   every running request each step (predicted − generated) and compares the worst one with
//!   the best waiting one (that scan is measured); the rank-preemption margin is huge, so it
//!   never preempts: preemption churn is a different workload.

use augur_core::engine::{AdmissionMode, Engine, EngineConfig, RequestDesc, StepResult};
use augur_core::policy::{Policy, PolicyKind};
use augur_core::time::Instant;

/// Every prompt's length.
pub const PROMPT: u32 = 512;

/// Prompts the budget can prefill per step beyond the decodes: well above the ~R/100 finishes
/// per step, so the running set refills every step.
pub const fn admissions_per_step(running: u32) -> u32 {
    8 + running / 32
}

/// Every request's predicted output: above every actual output (at most 199), so the rank of
/// a waiting request never depends on its length and the running mix stays stationary.
pub const PREDICTION: f64 = 256.0;

/// Steps run after the running set is full and before measuring: a few mean output lengths,
/// so the lengths in the running set are mixed.
pub const MIXING_STEPS: u32 = 400;

/// The engine configuration for `kind` with `running` running and `waiting` waiting requests.
pub fn config(kind: PolicyKind, running: u32, waiting: u32) -> EngineConfig {
    let mut c = EngineConfig::new(16, 65_536, running + waiting + 2 * running);
    c.policy = Policy::new(kind);
    c.max_running = running;
    c.token_budget = running + admissions_per_step(running) * PROMPT;
    c.prefill_chunk = PROMPT;
    c.priority_margin = 1e12;
    c.prefix_caching = false;
    // No prompt hashes: keep the hash store to its minimum.
    c.hash_capacity = 1;
    c
}

/// The steady decode with one thing changed, for `benches/step_instructions.rs`: issue 10
/// targets the steady decode only, but reports these so that the other step paths stay
/// honest. `benches/step.rs` and the C ABI bench use [`Variant::Steady`] only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// The workload above.
    Steady,
    /// Prefix caching on, and every prompt carries its 32 block hashes: the first 16 are a
    /// prefix all requests share (a system prompt), the rest are the request's own. Each
    /// admission hits 16 cached blocks; each finish hands 16 unique blocks to the evictable
    /// cache, which the next allocations evict.
    PrefixCaching,
    /// 2,048-token prompts prefilled in 256-token chunks, eight steps each: every step
    /// carries the chunks of the ~R/100 × 8 requests still prefilling beside the decodes.
    ChunkedPrefill,
    /// 16-token prompts (one block) and 4 device blocks per running slot, fewer than the
    /// running requests grow to (1 + ~6 decode blocks on average): admission fills the
    /// device, decodes that need a block preempt by recompute (about one per step), and the
    /// running set swings between ~150 and ~230 of R = 256.
    MemoryPressure,
}

/// Shared prefix blocks of [`Variant::PrefixCaching`].
pub const SHARED_PREFIX_BLOCKS: u32 = 16;

impl Variant {
    /// Every prompt's length under this variant.
    pub const fn prompt(self) -> u32 {
        match self {
            Variant::ChunkedPrefill => 2048,
            Variant::MemoryPressure => 16,
            _ => PROMPT,
        }
    }

    /// Whether the running set reaches `max_running` (all but [`Variant::MemoryPressure`]).
    pub const fn fills_running_set(self) -> bool {
        !matches!(self, Variant::MemoryPressure)
    }
}

/// [`config`] changed for `variant`.
pub fn variant_config(
    kind: PolicyKind,
    running: u32,
    waiting: u32,
    variant: Variant,
) -> EngineConfig {
    let mut c = config(kind, running, waiting);
    match variant {
        Variant::Steady => {}
        Variant::PrefixCaching => {
            c.prefix_caching = true;
            // Every live request's prompt hashes plus every device block's.
            c.hash_capacity = c.max_requests * (PROMPT / 16) + c.device_blocks;
        }
        Variant::ChunkedPrefill => {
            c.prefill_chunk = 256;
            // Room for as many whole prompts per step as the steady workload admits: with
            // less, admissions (one 256-token chunk per prefilling request per step) could not
            // keep up with the finishes and the running set would never fill.
            c.token_budget = running + admissions_per_step(running) * variant.prompt();
            // 128 prompt blocks and up to 13 decode blocks per running request.
            c.device_blocks = c.device_blocks.max(running * 160);
        }
        Variant::MemoryPressure => {
            c.device_blocks = running * 4;
            // vLLM's admission (blocks for this step's chunk only): it admits while the
            // prompt fits and preempts when decodes run out of blocks.
            c.admission = AdmissionMode::Eager;
        }
    }
    c
}

/// Output lengths by request slot, drawn from a fixed-seed generator.
pub struct Targets {
    rng: u64,
    prompt: u32,
    /// Output length of the request in each slot (indexed by handle index).
    by_slot: Vec<u32>,
}

impl Targets {
    /// Room for `max_requests` slots.
    pub fn new(max_requests: u32) -> Self {
        Self::with_prompt(max_requests, PROMPT)
    }

    /// Room for `max_requests` slots, for prompts of `prompt` tokens.
    pub fn with_prompt(max_requests: u32, prompt: u32) -> Self {
        Self {
            rng: 0x2545_f491_4f6c_dd1d,
            prompt,
            by_slot: vec![0; max_requests as usize],
        }
    }

    /// Draws the output length of the request just added in `slot`.
    pub fn draw(&mut self, slot: u32) {
        self.rng = self
            .rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.by_slot[slot as usize] = 1 + ((self.rng >> 33) % 199) as u32;
    }

    /// Whether a sampling entry of the request in `slot` (that had `computed_before` tokens
    /// and computes `tokens` more) finishes it: the tokens generated once this one is are the
    /// computed tokens past the prompt, plus 1.
    pub fn finishes(&self, slot: u32, computed_before: u32, tokens: u32) -> bool {
        computed_before + tokens + 1 >= self.prompt + self.by_slot[slot as usize]
    }
}

/// A serving loop of this workload over the Rust API (handle-keyed results).
pub struct RustDriver<'a> {
    /// The engine driven.
    pub engine: Engine<'a>,
    next_id: u64,
    now: u64,
    targets: Targets,
    results: Vec<StepResult>,
    /// Requests finished so far.
    pub finished: u64,
    variant: Variant,
    /// The prompt block hashes of the next arrival ([`Variant::PrefixCaching`]).
    hashes: Vec<u64>,
    /// Reports with [`Engine::complete_except`] (only the finishing entries) instead of one
    /// result per entry with [`Engine::complete`].
    sparse: bool,
}

impl<'a> RustDriver<'a> {
    /// Drives `engine`, built from [`config`] with `running` running requests.
    pub fn new(engine: Engine<'a>, running: u32) -> Self {
        Self::with_variant(engine, running, Variant::Steady)
    }

    /// Drives `engine`, built from [`variant_config`] for `variant`.
    pub fn with_variant(engine: Engine<'a>, running: u32, variant: Variant) -> Self {
        let max_requests = engine.config().max_requests;
        Self {
            engine,
            next_id: 1,
            now: 0,
            targets: Targets::with_prompt(max_requests, variant.prompt()),
            results: Vec::with_capacity(running as usize),
            finished: 0,
            variant,
            hashes: Vec::with_capacity((PROMPT / 16) as usize),
            sparse: false,
        }
    }

    /// Reports results with [`Engine::complete_except`]: only the entries that finish are
    /// listed, every other entry gets its default result (the same results as [`Self::step`]
    /// reports one by one).
    pub fn sparse_results(mut self) -> Self {
        self.sparse = true;
        self
    }

    /// The workload variant driven.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// A new arrival.
    pub fn add(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        self.hashes.clear();
        if self.variant == Variant::PrefixCaching {
            // Shared blocks hash to 1..=16, the request's own to id·2⁸ + k (distinct for ids
            // below 2⁵⁶): equal hashes mean equal content, as a real chained hash does.
            let own = |k: u32| (id << 8) | u64::from(k);
            self.hashes.extend((0..PROMPT / 16).map(|k| {
                if k < SHARED_PREFIX_BLOCKS {
                    u64::from(k) + 1
                } else {
                    own(k)
                }
            }));
        }
        let desc = RequestDesc {
            predicted_output_tokens: Some(PREDICTION),
            prompt_block_hashes: &self.hashes,
            ..RequestDesc::new(id, self.variant.prompt())
        };
        let h = self
            .engine
            .add_request(&desc, Instant(self.now))
            .expect("accepted");
        self.targets.draw(h.index());
    }

    /// One step: schedule, report one token per sampling entry (finishing at the target; only
    /// the finishing ones with [`Self::sparse_results`]), replace the finished requests with new arrivals. Never inlined, so a profile shows it.
    #[inline(never)]
    pub fn step(&mut self) {
        self.now += 1;
        let now = Instant(self.now);
        self.results.clear();
        let plan = self.engine.schedule(now).expect("schedule");
        for en in plan.entries {
            let mut r = en.default_result();
            if en.samples {
                r.finished =
                    self.targets
                        .finishes(en.handle.index(), en.computed_before, en.tokens);
            }
            if !self.sparse || r.finished {
                self.results.push(r);
            }
        }
        if self.sparse {
            self.engine.complete_except(&self.results, now)
        } else {
            self.engine.complete(&self.results, now)
        }
        .expect("complete");
        let done = self.engine.last_finished().len();
        self.finished += done as u64;
        for _ in 0..done {
            self.add();
        }
    }

    /// Adds the `running + waiting` requests, fills the running set and mixes the lengths.
    pub fn warm_up(&mut self, running: u32, waiting: u32) {
        for _ in 0..running + waiting {
            self.add();
        }
        // The running set is counted at schedule time: the step's finishes have left it since.
        // (Under memory pressure it never fills: the mixing steps are the whole warm-up.)
        while self.variant.fills_running_set()
            && self.engine.stats().running + (self.engine.last_finished().len() as u32) < running
        {
            self.step();
        }
        for _ in 0..MIXING_STEPS {
            self.step();
        }
        if !self.variant.fills_running_set() {
            return;
        }
        // Between steps, this step's finishes wait as new arrivals; the next step admits as
        // many.
        let s = self.engine.stats();
        assert_eq!(s.running + s.waiting, running + waiting, "{s:?}");
        assert!(s.running + admissions_per_step(running) >= running, "{s:?}");
    }
}
