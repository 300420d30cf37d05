//! The `augur` command-line tool: the simulator, the M/G/1 check and the policy catalogue.
//!
//! Run `augur --help` for the commands; `augur` alone runs `augur demo`. The command tree
//! lives in the binary-private [`cli`] module.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
