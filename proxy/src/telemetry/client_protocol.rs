//! Which wire protocol the client spoke for a gRPC call: the `client_protocol` label of
//! `sluice_grpc_requests_total`. The upstream always speaks gRPC; the grpc-web plugin turns
//! gRPC-Web calls into gRPC, and a transcoding plugin JSON calls (it sets [`ClientProtocol::Json`]
//! with `Completion::set_client_protocol`).

/// The client's protocol for one gRPC call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientProtocol {
    /// gRPC over HTTP/2.
    #[default]
    Grpc,
    /// gRPC-Web (`application/grpc-web*`), binary or text.
    GrpcWeb,
    /// JSON transcoded to gRPC.
    Json,
}

impl ClientProtocol {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientProtocol::Grpc => "grpc",
            ClientProtocol::GrpcWeb => "grpc-web",
            ClientProtocol::Json => "json",
        }
    }
}
