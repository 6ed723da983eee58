//! What ends an HTTP/1.x connection early, and which of those the client is told about before the
//! close (a 400, 431 or 501 from [`crate::respond`]): one enum for the whole server, since a head,
//! a body framing and a response body can each end the connection.

use thiserror::Error;

use crate::respond::ProxyError;
use crate::response_body::BodyError;
use crate::wire::h1::WireError;

/// Why a connection ended without a clean close.
#[derive(Debug, Error)]
pub enum H1ServerError {
    #[error("client connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid request head: {0}")]
    Parse(httparse::Error),
    #[error("request head larger than {0} bytes")]
    HeadTooLarge(usize),
    #[error("invalid request target")]
    Target,
    #[error("invalid method")]
    Method,
    #[error("invalid header '{0}'")]
    Header(String),
    #[error("more than one host header")]
    DuplicateHost,
    #[error("HTTP/1.1 request without a host header")]
    MissingHost,
    #[error("invalid host header '{0}'")]
    InvalidHost(String),
    #[error("invalid absolute-form request target")]
    AbsoluteTarget,
    #[error("request framing: {0}")]
    Wire(#[from] WireError),
    #[error("transfer-encoding on an HTTP/1.0 request")]
    TransferEncodingOnHttp10,
    #[error("transfer-encoding whose last coding is not chunked")]
    NotChunked,
    #[error("transfer-encoding lists chunked more than once, or an empty coding")]
    BadCodings,
    #[error("transfer-encoding '{0}' is not implemented")]
    UnknownCoding(String),
    #[error("client closed the connection inside the request head")]
    ClosedInHead,
    #[error("request head not complete within the header timeout")]
    HeaderTimeout,
    #[error("response body: {0}")]
    ResponseBody(BodyError),
    #[error("response body shorter than its content-length")]
    ResponseTooShort,
    #[error("response body longer than its content-length")]
    ResponseTooLong,
}

impl H1ServerError {
    /// The answer a client gets before its connection is closed; `None`: closed without one.
    pub(super) fn rejection(&self) -> Option<ProxyError> {
        match self {
            H1ServerError::HeadTooLarge(_) | H1ServerError::Parse(httparse::Error::TooManyHeaders) => {
                Some(ProxyError::HeadTooLarge)
            }
            H1ServerError::UnknownCoding(coding) => {
                Some(ProxyError::TransferCodingNotImplemented { coding: coding.clone() })
            }
            H1ServerError::Parse(_)
            | H1ServerError::Target
            | H1ServerError::Method
            | H1ServerError::Header(_)
            | H1ServerError::DuplicateHost
            | H1ServerError::MissingHost
            | H1ServerError::InvalidHost(_)
            | H1ServerError::AbsoluteTarget
            | H1ServerError::Wire(_)
            | H1ServerError::TransferEncodingOnHttp10
            | H1ServerError::NotChunked
            | H1ServerError::BadCodings => Some(ProxyError::InvalidRequest { reason: self.to_string() }),
            _ => None,
        }
    }
}
