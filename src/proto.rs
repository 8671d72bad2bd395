//! Code generated from `proto/occoder/v1/*.proto`: messages, clients and
//! server traits of the `occoder.v1` package.

/// The `occoder.v1` package.
pub mod v1 {
    #![allow(clippy::doc_lazy_continuation, clippy::doc_overindented_list_items, clippy::large_enum_variant)]
    tonic::include_proto!("occoder.v1");
}

/// Encoded `FileDescriptorSet` of the `occoder.v1` files and their imports,
/// served by the reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("occoder_descriptor");
