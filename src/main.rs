//! The `occoder` command: train, evaluate and run occupation coding models,
//! and serve them over gRPC.

fn main() -> std::process::ExitCode {
    occoder::cli::main()
}
