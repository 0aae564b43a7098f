//! The `tribune` binary: `tribune agent ...` runs the daemon; every other
//! subcommand is a CLI client of a running agent.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("agent") => tribune::agent::run(&args[1..]),
        _ => tribune::cli::run(&args),
    };
    std::process::exit(code);
}
