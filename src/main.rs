//! The `stagegate` binary: parse arguments, run the command, map errors to exit codes.

fn main() {
    let code = stagegate::cli::main();
    std::process::exit(code);
}
