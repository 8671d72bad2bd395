//! The occoder application: the command line and the gRPC service, built
//! on the engine crates (`occoder-text` → `occoder-model` → here).
//!
//! - [`cli`]: the `occoder` command's subcommands.
//! - [`proto`]: code generated from `proto/occoder/v1/*.proto`.
//! - [`server`]: the tonic gRPC server, which maps the coding service's
//!   API onto the models and keeps transport concerns out of the engine.

pub mod cli;
pub mod proto;
pub mod server;
