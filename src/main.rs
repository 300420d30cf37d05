//! The `augur` command-line tool.

fn main() {
    eprintln!("augur: the simulator is not built yet (see the open issues); nothing to run");
    std::process::exit(2);
}
