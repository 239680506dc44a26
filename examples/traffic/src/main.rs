//! Run with: cargo run -p example-traffic -- --duration 30 (the gateway at `http://127.0.0.1:8080`)
//!
//! Drives realistic traffic through the reference gateway: tokens, marketplace searches and
//! executions, workflows, generations, and a share of requests that are denied, invalid, fail
//! upstream or carry bad tokens. Bounded in count and time; prints a summary and a sample trace
//! id taken from the gateway's `traceresponse` header. Targets only the URL it is given.
mod options;
mod run;
mod scenarios;

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let options =
        match options::Options::parse(std::env::args().skip(1), |var| std::env::var(var).ok()) {
            Ok(options::Parsed::Run(options)) => options,
            Ok(options::Parsed::Help) => {
                println!("{}", options::USAGE);
                return ExitCode::SUCCESS;
            }
            Err(message) => {
                eprintln!("soma-traffic: {message}\n\n{}", options::USAGE);
                return ExitCode::from(2);
            }
        };
    run::run(options).await
}
