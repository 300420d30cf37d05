//! Synthetic tenants for traces that have none (`--tenants zipf:K:S` or `uniform:K`), and the
//! per-tenant service of a run with Jain's fairness index over it.
//!
//! A request's tenant lives in the trace ([`TraceRequest::tenant`](crate::trace::TraceRequest)):
//! read from the trace's own tenant column, or assigned here by [`TenantSpec::apply`]. The
//! simulator hands it to the engine, whose fair share (virtual token counters) charges it.

use anyhow::{Result, bail};
use serde::Serialize;

use crate::metrics::RequestRecord;
use crate::trace::{MAX_TENANTS, Trace};

/// How requests are spread over `K` tenants: request `i`'s tenant is a deterministic function
/// of the seed and `i` (a SplitMix64 hash mapped through the tenants' cumulative weights).
#[derive(Clone, Debug, PartialEq)]
pub struct TenantSpec {
    text: String,
    seed: u64,
    /// Cumulative weights, the last one 1.
    cdf: Vec<f64>,
}

impl TenantSpec {
    /// Parses `uniform:K` (each tenant equally likely) or `zipf:K:S` (tenant `k`, 0-based,
    /// with weight `1 / (k + 1)^S`), `1 ≤ K ≤` [`MAX_TENANTS`], `S ≥ 0` finite.
    pub fn parse(text: &str, seed: u64) -> Result<Self> {
        let parts: Vec<&str> = text.trim().split(':').collect();
        let count = |k: &str| -> Result<u32> {
            match k.parse::<u32>() {
                Ok(k) if (1..=MAX_TENANTS).contains(&k) => Ok(k),
                _ => bail!(
                    "--tenants `{text}`: K must be an integer in 1..={MAX_TENANTS} (got `{k}`)"
                ),
            }
        };
        let weights: Vec<f64> = match parts.as_slice() {
            ["uniform", k] => vec![1.0; count(k)? as usize],
            ["zipf", k, s] => {
                let k = count(k)?;
                let s: f64 = match s.parse::<f64>() {
                    Ok(s) if s.is_finite() && s >= 0.0 => s,
                    _ => bail!("--tenants `{text}`: S must be a finite number >= 0 (got `{s}`)"),
                };
                (1..=k).map(|r| f64::from(r).powf(-s)).collect()
            }
            _ => bail!("--tenants `{text}`: expected uniform:K or zipf:K:S"),
        };
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        if let Some(last) = cdf.last_mut() {
            *last = 1.0;
        }
        Ok(Self {
            text: text.trim().to_owned(),
            seed,
            cdf,
        })
    }

    /// Number of tenants.
    pub fn tenants(&self) -> u32 {
        self.cdf.len() as u32
    }

    /// The tenant of trace request `i`.
    pub fn tenant_of(&self, i: u64) -> u32 {
        let u = (splitmix64(self.seed ^ splitmix64(i)) >> 11) as f64 / (1u64 << 53) as f64;
        let k = self.cdf.partition_point(|&c| c <= u);
        k.min(self.cdf.len() - 1) as u32
    }

    /// Gives every request of `trace` its tenant under this spec (replacing the trace's own).
    pub fn apply(&self, trace: &mut Trace) -> Result<()> {
        trace.assign_tenants(self.tenants(), |i| self.tenant_of(i))?;
        Ok(())
    }

    /// The spec as written.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The per-tenant service of a run of `trace` whose `records` are in trace order; `source`
/// says where the tenants came from (the `--tenants` spec, or the trace's column).
pub fn service(trace: &Trace, records: &[RequestRecord], source: &str) -> TenantReport {
    let n = trace.tenant_count() as usize;
    let mut per: Vec<TenantService> = (0..n)
        .map(|k| TenantService {
            tenant: k as u32,
            name: trace
                .tenants
                .get(k)
                .cloned()
                .unwrap_or_else(|| k.to_string()),
            ..TenantService::default()
        })
        .collect();
    let mut e2e_sum = vec![0.0; n];
    for (req, r) in trace.requests.iter().zip(records) {
        // Tenant ids below the count are the trace's invariant; clamp rather than panic.
        let k = (req.tenant as usize).min(n - 1);
        {
            let t = &mut per[k];
            let tokens = u64::from(r.prompt_tokens) + u64::from(r.output_tokens);
            t.requests += 1;
            t.tokens_demanded += tokens;
            if let Some(e2e) = r.e2e_s() {
                t.completed += 1;
                t.tokens_served += tokens;
                e2e_sum[k] += e2e;
            }
        }
    }
    for (t, sum) in per.iter_mut().zip(&e2e_sum) {
        t.mean_e2e_s = (t.completed > 0).then(|| sum / t.completed as f64);
    }
    let active: Vec<&TenantService> = per.iter().filter(|t| t.requests > 0).collect();
    TenantReport {
        spec: source.to_owned(),
        jain_index_tokens: jain(active.iter().map(|t| t.tokens_served as f64)),
        jain_index_normalized: jain(
            active
                .iter()
                .map(|t| t.tokens_served as f64 / t.tokens_demanded.max(1) as f64),
        ),
        jain_index_latency: jain(per.iter().filter_map(|t| t.mean_e2e_s)),
        per_tenant: per,
    }
}

/// Jain's fairness index `(Σ x)² / (n · Σ x²)` (1 when all equal, `1/n` when one tenant gets
/// everything; 1 for no or all-zero values).
pub fn jain(xs: impl Iterator<Item = f64>) -> f64 {
    let (mut n, mut s, mut s2) = (0.0, 0.0, 0.0);
    for x in xs {
        n += 1.0;
        s += x;
        s2 += x * x;
    }
    if s2 == 0.0 { 1.0 } else { s * s / (n * s2) }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One tenant's service in a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TenantService {
    /// The tenant id (0-based).
    pub tenant: u32,
    /// Its name: the trace's label, or the id for `--tenants`.
    pub name: String,
    /// Requests of the tenant in the trace.
    pub requests: u64,
    /// Of which completed.
    pub completed: u64,
    /// Σ prompt + output tokens of its requests.
    pub tokens_demanded: u64,
    /// Σ prompt + output tokens of its completed requests.
    pub tokens_served: u64,
    /// Mean end-to-end latency of its completed requests (`null` when none).
    pub mean_e2e_s: Option<f64>,
}

impl TenantReport {
    /// The report as indented lines for people, after a summary table.
    pub fn write_table(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        writeln!(
            w,
            "tenants ({})  Jain's index {:.4} over tokens served, {:.4} over served / \
             demanded, {:.4} over mean e2e latency",
            self.spec, self.jain_index_tokens, self.jain_index_normalized, self.jain_index_latency
        )?;
        for s in &self.per_tenant {
            let e2e = s.mean_e2e_s.map_or("-".to_owned(), |x| format!("{x:.3} s"));
            writeln!(
                w,
                "  tenant {} ({}): {}/{} requests, {} of {} tokens served, mean e2e {e2e}",
                s.tenant, s.name, s.completed, s.requests, s.tokens_served, s.tokens_demanded
            )?;
        }
        Ok(())
    }
}

/// The per-tenant service of a run and Jain's index over it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TenantReport {
    /// Where the tenants came from: the `--tenants` spec, or `column` for the trace's own.
    pub spec: String,
    /// Jain's index over the tokens served per tenant (tenants with requests only).
    pub jain_index_tokens: f64,
    /// Jain's index over each tenant's tokens served / tokens demanded.
    pub jain_index_normalized: f64,
    /// Jain's index over the tenants' mean end-to-end latencies (tenants with a completed
    /// request only): 1 when every tenant waits alike.
    pub jain_index_latency: f64,
    /// One entry per tenant.
    pub per_tenant: Vec<TenantService>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_bounds() {
        assert_eq!(jain([2.0, 2.0, 2.0].into_iter()), 1.0);
        assert!((jain([1.0, 0.0, 0.0, 0.0].into_iter()) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn parse_and_spread() {
        assert!(TenantSpec::parse("zipf:0:1", 0).is_err());
        assert!(TenantSpec::parse("uniform", 0).is_err());
        assert!(TenantSpec::parse("zipf:4:-1", 0).is_err());
        let u = TenantSpec::parse("uniform:4", 7).unwrap();
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            counts[u.tenant_of(i) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (850..1150).contains(&c)),
            "{counts:?}"
        );
        let z = TenantSpec::parse("zipf:4:2", 7).unwrap();
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            counts[z.tenant_of(i) as usize] += 1;
        }
        // Weights 1, 1/4, 1/9, 1/16 of 1.4236: tenant 0 gets about 70%.
        assert!(counts[0] > 2600 && counts[0] < 3000, "{counts:?}");
        assert_eq!(
            u.tenant_of(5),
            TenantSpec::parse("uniform:4", 7).unwrap().tenant_of(5)
        );
    }
}
