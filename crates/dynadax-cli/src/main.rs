//! The `dynadax` command. All logic lives in the library half of this crate.
fn main() -> std::process::ExitCode {
    dynadax_cli::main()
}
