//! gRPC status codes as the wire carries them: platform-http's, which its
//! server layer reads too.

pub(crate) use platform_http::grpc::Code;
