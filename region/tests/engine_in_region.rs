//! An engine built in one region: it runs requests to completion with its invariants intact,
//! whatever garbage the region held, and every precondition of `engine_in_region` is an error.
//! Small on purpose, so that Miri runs it in seconds.

use core::mem::MaybeUninit;

use augur_core::engine::{
    Engine, EngineConfig, EngineConfigError, EngineInitError, RequestDesc, StepResult,
};
use augur_core::policy::{Policy, PolicyKind};
use augur_core::time::Instant;
use augur_region::{RegionError, RegionUnit, engine_in_region, region_size, units_as_bytes};

const REQUESTS: u64 = 8;

fn config() -> EngineConfig {
    let mut cfg = EngineConfig::new(4, 32, REQUESTS as u32);
    cfg.max_running = 4;
    cfg.host_blocks = 8;
    cfg
}

fn fair_config() -> EngineConfig {
    let mut cfg = config();
    cfg.policy = Policy::new(PolicyKind::Fcfs);
    cfg.policy.fair_share = true;
    cfg.max_tenants = 3;
    cfg
}

/// An aligned region of at least `size` bytes, every byte 0xAB.
fn garbage_region(size: usize) -> Vec<RegionUnit> {
    let mut units = vec![RegionUnit::UNINIT; RegionUnit::count_for(size)];
    for b in units_as_bytes(&mut units) {
        b.write(0xAB);
    }
    units
}

/// Adds `REQUESTS` requests over the tenants, runs steps until all are done, auditing after
/// each.
fn run_to_completion(e: &mut Engine<'_>, cfg: &EngineConfig) {
    let mut scratch = vec![0u32; (cfg.device_blocks + cfg.host_blocks) as usize];
    e.audit(&mut scratch).unwrap();
    for i in 0..REQUESTS {
        let k = i as u32;
        let desc = RequestDesc {
            max_output_tokens: Some(2 + k % 3),
            predicted_output_tokens: Some(f64::from(1 + k % 4)),
            tenant: k % cfg.max_tenants,
            ..RequestDesc::new(i, 3 + 2 * k)
        };
        e.add_request(&desc, Instant::from_micros(i)).unwrap();
    }
    e.audit(&mut scratch).unwrap();
    let mut now = 100;
    let mut results = Vec::new();
    for _ in 0..100 {
        if e.live_requests() == 0 {
            break;
        }
        now += 10;
        let plan = e.schedule(Instant::from_micros(now)).unwrap();
        results.clear();
        results.extend(
            plan.entries
                .iter()
                .map(|entry| StepResult::new(entry.handle, entry.samples as u32)),
        );
        now += 10;
        e.complete(&results, Instant::from_micros(now)).unwrap();
        e.audit(&mut scratch).unwrap();
    }
    let stats = e.stats();
    assert_eq!(e.live_requests(), 0, "{stats:?}");
    assert_eq!(stats.finished, REQUESTS);
    assert!(stats.steps >= 3, "{stats:?}");
}

#[test]
fn an_engine_in_a_garbage_region_runs_requests_to_completion() {
    let cfg = config();
    let (size, align) = region_size(&cfg).unwrap();
    assert_eq!(size % align, 0);
    let mut units = garbage_region(size);
    let mut e = engine_in_region(cfg, units_as_bytes(&mut units)).unwrap();
    run_to_completion(&mut e, &cfg);
}

#[test]
fn a_fair_share_engine_runs_in_a_region_too() {
    let cfg = fair_config();
    let l = cfg.layout().unwrap().region().unwrap();
    // Fair share uses the tenant heap instead of the single queue.
    assert_eq!(l.queue_entries.len, 0);
    assert_eq!(l.queue_positions.len, 0);
    assert_ne!(l.pair_nodes.len, 0);
    assert_ne!(l.tenant_entries.len, 0);
    let mut units = garbage_region(l.size);
    let mut e = engine_in_region(cfg, units_as_bytes(&mut units)).unwrap();
    run_to_completion(&mut e, &cfg);
}

#[test]
fn kv_events_live_in_the_region_too() {
    let mut cfg = config();
    cfg.kv_event_capacity = 16;
    let l = cfg.layout().unwrap().region().unwrap();
    assert_eq!(l.events.len, 16);
    assert_eq!(
        l.event_parents.len, 40,
        "one parent per device and host block"
    );
    assert!(l.size > config().layout().unwrap().bytes());
    let mut units = garbage_region(l.size);
    let mut e = engine_in_region(cfg, units_as_bytes(&mut units)).unwrap();
    // Whatever garbage the region held, the stream starts empty.
    let mut out = [augur_core::kv::KvEvent::default(); 4];
    assert_eq!(e.drain_kv_events(&mut out), 0);
    assert_eq!(e.kv_event_stats(), Default::default());
    run_to_completion(&mut e, &cfg);
}

#[test]
fn a_region_can_be_reused_for_a_new_engine() {
    let cfg = config();
    let (size, _) = region_size(&cfg).unwrap();
    let mut units = garbage_region(size);
    for _ in 0..2 {
        let mut e = engine_in_region(cfg, units_as_bytes(&mut units)).unwrap();
        run_to_completion(&mut e, &cfg);
    }
}

#[test]
fn extra_bytes_after_the_region_are_fine() {
    let cfg = config();
    let (size, _) = region_size(&cfg).unwrap();
    let mut units = garbage_region(size + 3 * RegionUnit::BYTES);
    let bytes = units_as_bytes(&mut units);
    let got = bytes.len();
    let e = engine_in_region(cfg, &mut bytes[..got - 5]).unwrap();
    assert_eq!(e.live_requests(), 0);
}

#[test]
fn a_region_one_byte_too_small_is_refused_with_the_exact_need() {
    for cfg in [config(), fair_config()] {
        let (size, _) = region_size(&cfg).unwrap();
        assert_eq!(size, cfg.layout().unwrap().bytes());
        let mut units = garbage_region(size);
        let bytes = units_as_bytes(&mut units);
        let err = engine_in_region(cfg, &mut bytes[..size - 1]).unwrap_err();
        assert_eq!(
            err,
            RegionError::TooSmall {
                need: size,
                got: size - 1
            }
        );
        assert!(err.to_string().contains(&size.to_string()));
        let err = engine_in_region(cfg, &mut bytes[..0]).unwrap_err();
        assert_eq!(err, RegionError::TooSmall { need: size, got: 0 });
    }
}

#[test]
fn a_misaligned_region_is_refused() {
    let cfg = config();
    let (size, align) = region_size(&cfg).unwrap();
    assert!(align > 1);
    let mut units = garbage_region(size + RegionUnit::BYTES);
    let bytes = units_as_bytes(&mut units);
    let err = engine_in_region(cfg, &mut bytes[1..]).unwrap_err();
    assert_eq!(err, RegionError::Misaligned { align });
    // Alignment is checked before length.
    let err = engine_in_region(cfg, &mut bytes[1..2]).unwrap_err();
    assert_eq!(err, RegionError::Misaligned { align });
}

#[test]
fn an_invalid_config_is_refused_before_the_region_is_looked_at() {
    let mut cfg = config();
    cfg.max_running = 0;
    let want = RegionError::Config(EngineConfigError::Field("max_running"));
    assert_eq!(
        region_size(&cfg),
        Err(EngineConfigError::Field("max_running"))
    );
    assert_eq!(engine_in_region(cfg, &mut []).unwrap_err(), want);
    let mut units = garbage_region(RegionUnit::BYTES);
    let bytes = units_as_bytes(&mut units);
    assert_eq!(engine_in_region(cfg, &mut bytes[1..]).unwrap_err(), want);
    assert!(std::error::Error::source(&want).is_some());
}

#[test]
fn errors_display() {
    let errors = [
        RegionError::Config(EngineConfigError::TooLarge),
        RegionError::TooSmall { need: 10, got: 9 },
        RegionError::Misaligned { align: 16 },
        RegionError::Layout { what: "blocks" },
        RegionError::Init(EngineInitError::StorageTooSmall {
            what: "requests",
            need: 2,
            got: 1,
        }),
    ];
    for e in errors {
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn region_units_are_aligned_for_the_region() {
    let mut units = vec![RegionUnit::default(); 2];
    let bytes: &mut [MaybeUninit<u8>] = units_as_bytes(&mut units);
    assert_eq!(bytes.len(), 2 * RegionUnit::BYTES);
    let (_, align) = region_size(&config()).unwrap();
    assert_eq!(bytes.as_ptr().addr() % align, 0);
    assert_eq!(RegionUnit::count_for(0), 0);
    assert_eq!(RegionUnit::count_for(1), 1);
    assert_eq!(RegionUnit::count_for(64), 1);
    assert_eq!(RegionUnit::count_for(65), 2);
}
