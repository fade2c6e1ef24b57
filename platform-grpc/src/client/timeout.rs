//! `grpc-timeout`, read from the request tonic builds (its
//! `Request::set_timeout`) and written, per attempt, for the server:
//! platform-http's reader and writer, which its server layer uses too.

pub(crate) use platform_http::grpc::{
    GRPC_TIMEOUT, format_timeout as format, parse_timeout as parse,
};
