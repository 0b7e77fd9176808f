use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = falconer::cli::Cli::parse();
    match falconer::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("falconer: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
