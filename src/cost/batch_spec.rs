//! Batch descriptions for `augur cost --batch`.

use anyhow::{Context, Result, bail, ensure};

use super::model::BatchShape;

/// Most sequences one part may describe (keeps `augur cost` O(1)-ish and far from overflow).
const MAX_SEQUENCES: u32 = 1 << 20;

/// Parses a batch such as `decode:128x4096`, `prefill:2048` or `prefill:512+decode:64x1024`.
///
/// Parts are joined by `+`:
///
/// * `decode:NxCONTEXT`: `N` sequences each decoding one token after `CONTEXT` cached tokens
///   (`decode:CONTEXT` is one sequence);
/// * `prefill:[Nx]TOKENS[@CONTEXT]`: `N` (default 1) prompts or prompt chunks of `TOKENS`
///   tokens after `CONTEXT` (default 0) cached tokens. Each samples one token (the chunk is
///   taken to be the last of its prompt).
///
/// Errors name the part that is wrong.
pub fn parse_batch_spec(spec: &str) -> Result<BatchShape> {
    let mut shape = BatchShape::new();
    ensure!(!spec.trim().is_empty(), "empty batch spec");
    for part in spec.split('+') {
        parse_part(part.trim(), &mut shape)
            .with_context(|| format!("in batch spec part `{}`", part.trim()))?;
    }
    Ok(shape)
}

fn parse_part(part: &str, shape: &mut BatchShape) -> Result<()> {
    let Some((kind, rest)) = part.split_once(':') else {
        bail!("expected `decode:NxCONTEXT` or `prefill:[Nx]TOKENS[@CONTEXT]`");
    };
    match kind.trim().to_ascii_lowercase().as_str() {
        "decode" => {
            let (n, context) = match rest.split_once(['x', 'X']) {
                Some((n, c)) => (number(n, "sequence count")?, number(c, "context")?),
                None => (1, number(rest, "context")?),
            };
            ensure!(n > 0, "sequence count must be at least 1");
            ensure!(
                n <= MAX_SEQUENCES,
                "at most {MAX_SEQUENCES} sequences per part"
            );
            ensure!(
                context > 0,
                "decode context must be at least 1 (a decode step follows its prompt)"
            );
            for _ in 0..n {
                shape.add_sampled(1, context, true);
            }
        }
        "prefill" => {
            let (body, context) = match rest.split_once('@') {
                Some((b, c)) => (b, number(c, "context")?),
                None => (rest, 0),
            };
            let (n, tokens) = match body.split_once(['x', 'X']) {
                Some((n, t)) => (number(n, "sequence count")?, number(t, "tokens")?),
                None => (1, number(body, "tokens")?),
            };
            ensure!(n > 0, "sequence count must be at least 1");
            ensure!(
                n <= MAX_SEQUENCES,
                "at most {MAX_SEQUENCES} sequences per part"
            );
            ensure!(tokens > 0, "prefill tokens must be at least 1");
            for _ in 0..n {
                shape.add_sampled(tokens, context, true);
            }
        }
        other => bail!("unknown kind `{other}`; expected `decode` or `prefill`"),
    }
    Ok(())
}

fn number(text: &str, what: &str) -> Result<u32> {
    let t = text.trim();
    ensure!(!t.is_empty(), "missing {what}");
    t.replace('_', "")
        .parse::<u32>()
        .map_err(|_| anyhow::anyhow!("{what} `{t}` is not a whole number in 0..=4294967295"))
}
