//! The engine of `sluice-grpc-call`, a small grpcurl for demos and end-to-end tests (grpcurl cannot be installed
//! here). It knows the demo protos at compile time instead of asking reflection for descriptors: JSON in and out
//! goes through the messages' serde derives, and the call shape comes from a table of the demo methods. Reflection
//! is used only to list services.

use std::time::Duration;

use futures_util::StreamExt;
use http::uri::PathAndQuery;
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::metadata::{AsciiMetadataValue, BinaryMetadataValue, MetadataKey, MetadataMap};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

use crate::echo::{EchoRequest, EchoResponse};
use crate::hello::{HelloRequest, HelloResponse};
use crate::tls::{server_verifier, Verify};
use crate::user::{LoginRequest, LoginResponse};
use crate::{methods, MAX_MESSAGE_SIZE};

/// Why a CLI call failed: a gRPC status (printed as `ERROR: code=.. message=..`, exit 1) or bad usage.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("ERROR: code={:?} message={}", .0.code(), .0.message())]
    Status(Status),
    #[error("{0}")]
    Usage(String),
}

impl From<Status> for CallError {
    fn from(status: Status) -> Self {
        CallError::Status(status)
    }
}

fn usage(message: impl Into<String>) -> CallError {
    CallError::Usage(message.into())
}

/// TLS settings of a target.
#[derive(Clone, Debug)]
pub struct TlsTarget {
    pub verify: Verify,
    /// SNI and the name checked in the certificate; defaults to the authority's host, else the address's host.
    pub servername: Option<String>,
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct Target {
    /// `host:port`.
    pub addr: String,
    pub tls: Option<TlsTarget>,
    /// `:authority` to send instead of `addr`.
    pub authority: Option<String>,
}

/// The host part of `host:port` or `[v6]:port`.
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => addr,
    }
}

/// A lazily connected channel: connection failures surface as `UNAVAILABLE` from the first call.
pub fn channel(target: &Target) -> Result<Channel, CallError> {
    let scheme = if target.tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", target.addr))
        .map_err(|e| usage(format!("bad address {:?}: {e}", target.addr)))?
        .connect_timeout(Duration::from_secs(10));
    if let Some(authority) = &target.authority {
        let origin = format!("{scheme}://{authority}")
            .parse()
            .map_err(|e| usage(format!("bad authority {authority:?}: {e}")))?;
        endpoint = endpoint.origin(origin);
    }
    if let Some(tls) = &target.tls {
        let name = tls
            .servername
            .clone()
            .or_else(|| target.authority.as_deref().map(|a| host_of(a).to_owned()))
            .unwrap_or_else(|| host_of(&target.addr).to_owned());
        let verifier = server_verifier(&tls.verify).map_err(|e| usage(e.to_string()))?;
        endpoint = endpoint
            .tls_config_with_verifier(ClientTlsConfig::new().domain_name(name), verifier)
            .map_err(|e| usage(format!("TLS: {e}")))?;
    }
    Ok(endpoint.connect_lazy())
}

/// Parses `-H 'name: value'` lines into metadata; `-bin` names take base64 values.
pub fn metadata(headers: &[String]) -> Result<MetadataMap, CallError> {
    let mut map = MetadataMap::new();
    for line in headers {
        let (name, value) =
            line.split_once(':').ok_or_else(|| usage(format!("header {line:?} is not 'name: value'")))?;
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        if name.ends_with("-bin") {
            let key =
                MetadataKey::from_bytes(name.as_bytes()).map_err(|_| usage(format!("bad header name {name:?}")))?;
            let bytes = crate::json_bytes::decode(value).map_err(|e| usage(format!("header {name}: {e}")))?;
            map.append_bin(key, BinaryMetadataValue::from_bytes(&bytes));
        } else {
            let key =
                MetadataKey::from_bytes(name.as_bytes()).map_err(|_| usage(format!("bad header name {name:?}")))?;
            let value: AsciiMetadataValue = value.parse().map_err(|_| usage(format!("bad value for {name}")))?;
            map.append(key, value);
        }
    }
    Ok(map)
}

/// The four gRPC call shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Unary,
    ServerStreaming,
    ClientStreaming,
    Bidi,
}

/// Every method the CLI can call, with its shape.
pub const METHODS: &[(&str, Shape)] = &[
    (methods::SAY_HELLO, Shape::Unary),
    (methods::LOTS_OF_REPLIES, Shape::ServerStreaming),
    (methods::LOTS_OF_GREETINGS, Shape::ClientStreaming),
    (methods::BIDI_HELLO, Shape::Bidi),
    (methods::ECHO, Shape::Unary),
    (methods::ECHO_V2, Shape::Unary),
    (methods::LOGIN, Shape::Unary),
    (methods::HEALTH_CHECK, Shape::Unary),
];

/// `hello.HelloService/SayHello`, `/hello.HelloService/SayHello` or `hello.HelloService.SayHello` →
/// `/hello.HelloService/SayHello`.
pub fn normalize_method(method: &str) -> String {
    let method = method.trim_start_matches('/');
    if method.contains('/') {
        format!("/{method}")
    } else if let Some((service, name)) = method.rsplit_once('.') {
        format!("/{service}/{name}")
    } else {
        format!("/{method}")
    }
}

/// What to print besides the messages.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub timeout: Option<Duration>,
    /// Report response headers and trailers through `on_meta`.
    pub verbose: bool,
}

/// One line of output: a message as compact JSON, or (verbose) a header or trailer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Message(String),
    Header(String),
    Trailer(String),
}

/// Calls `method` with `json` (an object, or for client streaming and bidi an array of objects), handing every
/// reply to `out` as it arrives.
pub async fn call(
    channel: Channel,
    method: &str,
    json: &str,
    metadata: MetadataMap,
    options: Options,
    out: &mut (dyn FnMut(Output) + Send),
) -> Result<(), CallError> {
    let path = normalize_method(method);
    let Some(&(path, shape)) = METHODS.iter().find(|(p, _)| *p == path) else {
        let known: Vec<&str> = METHODS.iter().map(|(p, _)| p.trim_start_matches('/')).collect();
        return Err(usage(format!("unknown method {path}; known: {}", known.join(", "))));
    };
    let input: serde_json::Value = serde_json::from_str(if json.trim().is_empty() { "{}" } else { json })
        .map_err(|e| usage(format!("JSON: {e}")))?;
    let call = async {
        match path {
            methods::SAY_HELLO | methods::LOTS_OF_REPLIES | methods::LOTS_OF_GREETINGS | methods::BIDI_HELLO => {
                run::<HelloRequest, HelloResponse>(channel, path, shape, input, metadata, options, out).await
            }
            methods::ECHO | methods::ECHO_V2 => {
                run::<EchoRequest, EchoResponse>(channel, path, shape, input, metadata, options, out).await
            }
            methods::LOGIN => {
                run::<LoginRequest, LoginResponse>(channel, path, shape, input, metadata, options, out).await
            }
            _ => health_check(channel, input, metadata, options, out).await,
        }
    };
    match options.timeout {
        None => call.await,
        Some(timeout) => match tokio::time::timeout(timeout + Duration::from_millis(500), call).await {
            Ok(Err(CallError::Status(status)))
                if status.code() == Code::Cancelled && status.message() == "Timeout expired" =>
            {
                Err(Status::deadline_exceeded("deadline exceeded (client side)").into())
            }
            Ok(result) => result,
            Err(_) => Err(Status::deadline_exceeded("deadline exceeded (client side)").into()),
        },
    }
}

fn messages<Req: DeserializeOwned>(input: serde_json::Value, shape: Shape) -> Result<Vec<Req>, CallError> {
    let values = match input {
        serde_json::Value::Array(values) => {
            if matches!(shape, Shape::Unary | Shape::ServerStreaming) && values.len() != 1 {
                return Err(usage("this method takes one message: give a JSON object"));
            }
            values
        }
        value => vec![value],
    };
    values.into_iter().map(|v| serde_json::from_value(v).map_err(|e| usage(format!("JSON message: {e}")))).collect()
}

fn request<T>(message: T, metadata: &MetadataMap, options: Options) -> Request<T> {
    let mut request = Request::new(message);
    *request.metadata_mut() = metadata.clone();
    if let Some(timeout) = options.timeout {
        request.set_timeout(timeout);
    }
    request
}

fn report(map: &MetadataMap, trailer: bool, options: Options, out: &mut (dyn FnMut(Output) + Send)) {
    if !options.verbose {
        return;
    }
    for (name, value) in map.clone().into_headers().iter() {
        let line = format!("{}: {}", name, String::from_utf8_lossy(value.as_bytes()));
        out(if trailer { Output::Trailer(line) } else { Output::Header(line) });
    }
}

fn to_json<T: Serialize>(message: &T) -> Result<String, CallError> {
    serde_json::to_string(message).map_err(|e| usage(format!("cannot print reply: {e}")))
}

async fn run<Req, Resp>(
    channel: Channel,
    path: &'static str,
    shape: Shape,
    input: serde_json::Value,
    metadata: MetadataMap,
    options: Options,
    out: &mut (dyn FnMut(Output) + Send),
) -> Result<(), CallError>
where
    Req: Message + DeserializeOwned + Default + Send + Sync + 'static,
    Resp: Message + Serialize + Default + Send + Sync + 'static,
{
    let mut inputs = messages::<Req>(input, shape)?;
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    grpc.ready().await.map_err(|e| Status::unavailable(format!("not ready: {e}")))?;
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    let path = PathAndQuery::from_static(path);
    let mut replies = match shape {
        Shape::Unary => {
            let message = inputs.pop().unwrap_or_default();
            let response = grpc.unary(request(message, &metadata, options), path, codec).await?;
            report(response.metadata(), false, options, out);
            out(Output::Message(to_json(response.get_ref())?));
            return Ok(());
        }
        Shape::ClientStreaming => {
            let stream = futures_util::stream::iter(inputs);
            let response = grpc.client_streaming(request(stream, &metadata, options), path, codec).await?;
            report(response.metadata(), false, options, out);
            out(Output::Message(to_json(response.get_ref())?));
            return Ok(());
        }
        Shape::ServerStreaming => {
            let message = inputs.pop().unwrap_or_default();
            grpc.server_streaming(request(message, &metadata, options), path, codec).await?
        }
        Shape::Bidi => {
            let stream = futures_util::stream::iter(inputs);
            grpc.streaming(request(stream, &metadata, options), path, codec).await?
        }
    };
    report(replies.metadata(), false, options, out);
    let stream = replies.get_mut();
    while let Some(message) = stream.message().await? {
        out(Output::Message(to_json(&message)?));
    }
    if let Some(trailers) = stream.trailers().await? {
        report(&trailers, true, options, out);
    }
    Ok(())
}

async fn health_check(
    channel: Channel,
    input: serde_json::Value,
    metadata: MetadataMap,
    options: Options,
    out: &mut (dyn FnMut(Output) + Send),
) -> Result<(), CallError> {
    let service = match input.get("service") {
        None => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => return Err(usage(format!("service must be a string, got {other}"))),
    };
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let request = request(tonic_health::pb::HealthCheckRequest { service }, &metadata, options);
    let response = client.check(request).await?;
    report(response.metadata(), false, options, out);
    let status = response.get_ref().status().as_str_name();
    out(Output::Message(serde_json::json!({ "status": status }).to_string()));
    Ok(())
}

/// Service names through reflection (v1, else v1alpha), sorted.
pub async fn list_services(channel: Channel, metadata: MetadataMap) -> Result<Vec<String>, CallError> {
    use tonic_reflection::pb::{v1, v1alpha};
    let v1_request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let mut request = Request::new(futures_util::stream::iter([v1_request]));
    *request.metadata_mut() = metadata.clone();
    let mut names: Vec<String> = match client.server_reflection_info(request).await {
        Ok(mut response) => match response.get_mut().next().await {
            Some(reply) => match reply?.message_response {
                Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
                    list.service.into_iter().map(|s| s.name).collect()
                }
                other => return Err(Status::internal(format!("unexpected reflection reply {other:?}")).into()),
            },
            None => return Err(Status::internal("reflection sent no reply").into()),
        },
        Err(status) if status.code() == Code::Unimplemented => {
            let alpha_request = v1alpha::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
            };
            let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
            let mut request = Request::new(futures_util::stream::iter([alpha_request]));
            *request.metadata_mut() = metadata;
            let mut response = client.server_reflection_info(request).await?;
            match response.get_mut().next().await {
                Some(reply) => match reply?.message_response {
                    Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
                        list.service.into_iter().map(|s| s.name).collect()
                    }
                    other => return Err(Status::internal(format!("unexpected reflection reply {other:?}")).into()),
                },
                None => return Err(Status::internal("reflection sent no reply").into()),
            }
        }
        Err(status) => return Err(status.into()),
    };
    names.sort();
    names.dedup();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_method_names() {
        assert_eq!(normalize_method("hello.HelloService/SayHello"), methods::SAY_HELLO);
        assert_eq!(normalize_method("/hello.HelloService/SayHello"), methods::SAY_HELLO);
        assert_eq!(normalize_method("com.example.User.Login"), methods::LOGIN);
    }

    #[test]
    fn host_of_strips_ports() {
        assert_eq!(host_of("127.0.0.1:8443"), "127.0.0.1");
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert_eq!(host_of("example.com"), "example.com");
        assert_eq!(host_of("example.com:80"), "example.com");
    }

    #[test]
    fn parses_headers() {
        let md = metadata(&["X-Foo: bar baz".into(), "x-token-bin: AQI=".into()]).unwrap();
        assert_eq!(md.get("x-foo").and_then(|v| v.to_str().ok()), Some("bar baz"));
        assert_eq!(md.get_bin("x-token-bin").and_then(|v| v.to_bytes().ok()).as_deref(), Some(&[1u8, 2][..]));
        assert!(matches!(metadata(&["nocolon".into()]), Err(CallError::Usage(_))));
    }

    #[test]
    fn json_bytes_fields_are_base64() {
        let request: EchoRequest = serde_json::from_str(r#"{"message":"m","payload":"AQI="}"#).unwrap();
        assert_eq!(request.payload, vec![1, 2]);
        let response = EchoResponse { message: "m".into(), backend: "b".into(), payload: vec![], method: "/x".into() };
        assert_eq!(serde_json::to_string(&response).unwrap(), r#"{"message":"m","backend":"b","method":"/x"}"#);
        let empty: HelloRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(empty.greeting, "");
    }

    #[test]
    fn unary_rejects_several_messages() {
        let input = serde_json::json!([{"greeting": "a"}, {"greeting": "b"}]);
        assert!(messages::<HelloRequest>(input.clone(), Shape::Unary).is_err());
        assert_eq!(messages::<HelloRequest>(input, Shape::Bidi).map(|m| m.len()).ok(), Some(2));
    }
}
