//! Generated types and services of the `samstream.v1` wire contract.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("samstream.v1");

/// Encoded descriptor set served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("samstream_descriptor");
