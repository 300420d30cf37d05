//! The command tree of the `augur` binary.
//!
//! One module per job:
//!
//! | module | job |
//! |---|---|
//! | [`options`] | the flags shared by `simulate` and `sweep` (trace, model, engine knobs, policy parameters) and the value parsers behind them |
//! | [`config_file`] | the `--config augur.toml` file: `[model]`, `[gpu]`, `[cost]`, `[engine]`, `[policy]` |
//! | [`setup`] | turns flags + file into a trace, a cost model, an engine configuration and policies; flags override the file |
//! | [`runner`] | runs a list of simulations on a few threads, with an optional progress bar |
//! | [`demo`] | `augur demo` (also `augur` with no arguments) |
//! | [`simulate`] | `augur simulate`: one run, printed as a table, JSON or CSV |
//! | [`sweep`] | `augur sweep`: policies × rate scales × predictors (× replicas × routers), CSV and SVG plots |
//! | [`cluster`] | `augur cluster`: one trace over N replicas behind a router |
//! | [`mg1`] | `augur mg1`: the M/G/1 queue beside its closed forms |
//! | [`cost`] | `augur cost`: one iteration's predicted time and its per-operator breakdown |
//! | [`capacity`] | `augur capacity`: per policy, the highest arrival-rate scale that meets an SLO |
//! | [`reproduce`] | `augur reproduce`: the papers' published directions beside augur's numbers |
//! | [`policies`] | `augur policies`: the catalogue of policies, presets and predictors |
//!
//! Errors: clap reports malformed flags itself (exit code 2). Every other error is a
//! [`Failure`]: [`Failure::Usage`] (a bad value, configuration file or combination of options;
//! exit code 2) or [`Failure::Runtime`] (a trace that cannot be read or parsed, an output file
//! that cannot be written; exit code 1). Nothing on the input path panics.

mod capacity;
mod cluster;
mod config_file;
mod cost;
mod demo;
mod mg1;
mod options;
mod policies;
mod reproduce;
mod runner;
mod setup;
mod simulate;
mod sweep;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Prediction- and memory-aware LLM inference scheduling: a trace-driven simulator of the real
/// augur scheduler, with a roofline cost model, output-length predictors with known error
/// models, and an M/G/1 check against queueing theory.
///
/// With no command, runs `augur demo`.
#[derive(Parser, Debug)]
#[command(name = "augur", version, propagate_version = true)]
#[command(after_help = "Start with `augur demo`, then `augur simulate --help`.")]
pub struct Cli {
    /// The command; `demo` when none is given.
    #[command(subcommand)]
    command: Option<Command>,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
enum Command {
    // The variants' help comes from the argument structs' doc comments.
    Demo(demo::DemoArgs),
    Simulate(Box<simulate::SimulateArgs>),
    Sweep(Box<sweep::SweepArgs>),
    Cluster(Box<cluster::ClusterArgs>),
    Mg1(mg1::Mg1Args),
    Cost(cost::CostArgs),
    Capacity(Box<capacity::CapacityArgs>),
    Reproduce(reproduce::ReproduceArgs),
    /// List the policies, model and GPU presets, predictors and trace specs.
    Policies,
}

/// Why a command failed, which decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// The invocation is wrong (a value, a configuration file, a combination): exit code 2.
    Usage(anyhow::Error),
    /// The invocation is fine but the work failed (I/O, a malformed trace): exit code 1.
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Runtime(e.into())
    }
}

/// A command's result.
pub type CliResult<T = ()> = Result<T, Failure>;

/// Wraps an error as a usage error.
pub fn usage(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Usage(e.into())
}

/// Parses the command line, runs the command and maps its outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Prints help/version (exit 0) or the error naming the flag (exit 2).
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        None => demo::run(&demo::DemoArgs::default()),
        Some(Command::Demo(a)) => demo::run(&a),
        Some(Command::Simulate(a)) => simulate::run(&a),
        Some(Command::Sweep(a)) => sweep::run(&a),
        Some(Command::Cluster(a)) => cluster::run(&a),
        Some(Command::Mg1(a)) => mg1::run(&a),
        Some(Command::Cost(a)) => cost::run(&a),
        Some(Command::Capacity(a)) => capacity::run(&a),
        Some(Command::Reproduce(a)) => reproduce::run(&a),
        Some(Command::Policies) => policies::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => report(&e, 2),
        Err(Failure::Runtime(e)) => report(&e, 1),
    }
}

/// Prints `e` with its causes on stderr and returns `code` (0, silently, for a closed pipe).
fn report(e: &anyhow::Error, code: u8) -> ExitCode {
    let broken_pipe = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return ExitCode::SUCCESS;
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "augur: error: {e:#}");
    ExitCode::from(code)
}
