//! The demo handlers: grpcbin's `hello.HelloService` (one method per call shape), `echo.Echo` (says which backend
//! and method answered, and echoes the payload) and `com.example.User`. Every handler first applies the
//! [`Knobs`](crate::knobs::Knobs) of its request. Responses stream lazily from the request stream or a counter:
//! nothing is buffered, no task is spawned, so a cancelled call stops its work when hyper drops it.

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::echo::echo_server::Echo;
use crate::echo::{EchoRequest, EchoResponse};
use crate::hello::hello_service_server::HelloService;
use crate::hello::{HelloRequest, HelloResponse};
use crate::knobs::Knobs;
use crate::methods;
use crate::user::user_server::User;
use crate::user::{LoginRequest, LoginResponse};

type ReplyStream = Pin<Box<dyn Stream<Item = Result<HelloResponse, Status>> + Send + 'static>>;

fn hello(greeting: &str) -> HelloResponse {
    HelloResponse { reply: format!("hello {greeting}") }
}

/// `hello.HelloService`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Hello;

#[tonic::async_trait]
impl HelloService for Hello {
    async fn say_hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloResponse>, Status> {
        Knobs::from_metadata(request.metadata())?.before_reply().await?;
        Ok(Response::new(hello(&request.get_ref().greeting)))
    }

    type LotsOfRepliesStream = ReplyStream;

    /// Replies `hello <greeting> #1` .. `#N`, N = `x-reply-count` (default 3), `x-reply-interval-ms` apart.
    async fn lots_of_replies(&self, request: Request<HelloRequest>) -> Result<Response<ReplyStream>, Status> {
        let knobs = Knobs::from_metadata(request.metadata())?;
        knobs.before_reply().await?;
        let greeting = request.into_inner().greeting;
        let count = knobs.reply_count();
        let interval = knobs.reply_interval;
        let replies = futures_util::stream::unfold(1u64, move |i| {
            let reply = (i <= count).then(|| HelloResponse { reply: format!("hello {greeting} #{i}") });
            async move {
                let reply = reply?;
                if let (Some(gap), true) = (interval, i > 1) {
                    tokio::time::sleep(gap).await;
                }
                Some((Ok(reply), i + 1))
            }
        });
        Ok(Response::new(Box::pin(replies)))
    }

    /// Replies once, `hello <g1>,<g2>,...`, after the client closed its stream.
    async fn lots_of_greetings(
        &self,
        request: Request<Streaming<HelloRequest>>,
    ) -> Result<Response<HelloResponse>, Status> {
        Knobs::from_metadata(request.metadata())?.before_reply().await?;
        let mut inbound = request.into_inner();
        let mut greetings = Vec::new();
        while let Some(message) = inbound.message().await? {
            greetings.push(message.greeting);
        }
        Ok(Response::new(hello(&greetings.join(","))))
    }

    type BidiHelloStream = ReplyStream;

    /// Answers each request with `hello <greeting>` as soon as it arrives.
    async fn bidi_hello(&self, request: Request<Streaming<HelloRequest>>) -> Result<Response<ReplyStream>, Status> {
        Knobs::from_metadata(request.metadata())?.before_reply().await?;
        let replies = request.into_inner().map(|message| message.map(|m| hello(&m.greeting)));
        Ok(Response::new(Box::pin(replies)))
    }
}

/// `echo.Echo`.
#[derive(Clone, Debug)]
pub(crate) struct EchoService {
    pub(crate) name: String,
}

impl EchoService {
    async fn answer(&self, method: &str, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        Knobs::from_metadata(request.metadata())?.before_reply().await?;
        let EchoRequest { message, payload } = request.into_inner();
        Ok(Response::new(EchoResponse { message, backend: self.name.clone(), payload, method: method.to_owned() }))
    }
}

#[tonic::async_trait]
impl Echo for EchoService {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        self.answer(methods::ECHO, request).await
    }

    async fn echo_v2(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        self.answer(methods::ECHO_V2, request).await
    }
}

/// `com.example.User`.
#[derive(Clone, Debug)]
pub(crate) struct UserService {
    pub(crate) name: String,
}

#[tonic::async_trait]
impl User for UserService {
    /// Replies `hello <username>`.
    async fn login(&self, request: Request<LoginRequest>) -> Result<Response<LoginResponse>, Status> {
        Knobs::from_metadata(request.metadata())?.before_reply().await?;
        let username = &request.get_ref().username;
        Ok(Response::new(LoginResponse { message: format!("hello {username}"), backend: self.name.clone() }))
    }
}
