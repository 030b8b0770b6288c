//! The `ward` binary: parse arguments, run the command, exit with its code.

#![forbid(unsafe_code)]

fn main() {
    std::process::exit(ward::cli::main());
}
