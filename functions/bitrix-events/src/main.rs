//! The AWS Lambda entry point of this function is built with the AWS deployment (issue 3).
//! Until then its routes and jobs run inside `functions/local`.

fn main() {
    eprintln!("bitrix-events: the Lambda entry point is not built yet; run `cargo run --release` (functions/local) instead.");
    std::process::exit(2);
}
