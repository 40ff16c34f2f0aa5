//! Requests whose `id` jsonrpsee cannot represent (`[]`, `{}`, `1.5`, `-1`) get -32600.
//!
//! jsonrpsee reads such a request as a notification, because a notification is what is
//! left when the `id` does not parse; it then runs nothing and answers HTTP 200 with an empty
//! result, so the caller never learns that its request was ignored. This layer answers
//! what JSON-RPC 2.0 says: an Invalid Request error with a `null` id. A batch with such an
//! entry is refused whole, with the same single error. (Over WebSocket, jsonrpsee answers
//! nothing for such a message; the HTTP path is where a caller waits for an answer.)

use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use jsonrpsee::core::BoxError;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use jsonrpsee::types::{ErrorObjectOwned, Id, Response, ResponsePayload};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// JSON-RPC's Invalid Request code.
const INVALID_REQUEST: i32 = -32600;

/// The layer; `max_body` is the server's request size limit, applied while reading.
#[derive(Clone, Copy)]
pub(crate) struct RequestIds {
    pub(crate) max_body: u32,
}

impl<S> Layer<S> for RequestIds {
    type Service = CheckedIds<S>;

    fn layer(&self, inner: S) -> CheckedIds<S> {
        CheckedIds {
            inner,
            max_body: self.max_body,
        }
    }
}

/// [`RequestIds`] applied to a service.
#[derive(Clone)]
pub(crate) struct CheckedIds<S> {
    inner: S,
    max_body: u32,
}

impl<S> Service<HttpRequest> for CheckedIds<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<HttpResponse, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        // The clone is the one that was not polled ready: keep the ready one for this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if request.method() != hyper::Method::POST {
            return Box::pin(inner.call(request));
        }
        let max_body = self.max_body;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = match Limited::new(body, max_body as usize).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<LengthLimitError>() => {
                    return Ok(jsonrpsee::server::http::response::too_large(max_body));
                }
                // The client went away mid-body, or sent a malformed one.
                Err(e) => return Err(e),
            };
            if has_invalid_id(&bytes) {
                return Ok(invalid_request());
            }
            let body = HttpBody::new(Full::new(bytes));
            inner.call(HttpRequest::from_parts(parts, body)).await
        })
    }
}

/// Only the `id` of a request object; the rest is jsonrpsee's to read.
#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

/// Whether the body, a request or a batch of them, has an `id` that is present, not
/// `null`, and not an id jsonrpsee can read. Bodies that are not JSON objects or arrays
/// are left to jsonrpsee, which answers them properly.
fn has_invalid_id(body: &[u8]) -> bool {
    let invalid = |object: &IdOnly<'_>| {
        object
            .id
            .is_some_and(|id| serde_json::from_str::<Id<'_>>(id.get()).is_err())
    };
    if let Ok(object) = serde_json::from_slice::<IdOnly<'_>>(body) {
        return invalid(&object);
    }
    match serde_json::from_slice::<Vec<&RawValue>>(body) {
        Ok(entries) => entries.iter().any(|entry| {
            serde_json::from_str::<IdOnly<'_>>(entry.get()).is_ok_and(|object| invalid(&object))
        }),
        Err(_) => false,
    }
}

fn invalid_request() -> HttpResponse {
    let error = ErrorObjectOwned::owned(
        INVALID_REQUEST,
        "Invalid request: `id` must be a string, a non-negative integer or null",
        None::<()>,
    );
    let response = Response::new(ResponsePayload::<()>::error(error), Id::Null);
    match serde_json::to_string(&response) {
        Ok(body) => jsonrpsee::server::http::response::ok_response(body),
        Err(_) => jsonrpsee::server::http::response::internal_error(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_jsonrpsee_cannot_read_are_invalid() {
        for body in [
            r#"{"jsonrpc":"2.0","id":[],"method":"socket.state"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"socket.state"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"socket.state"}"#,
            r#"{"jsonrpc":"2.0","id":-1,"method":"socket.state"}"#,
            r#"{"jsonrpc":"2.0","id":true,"method":"socket.state"}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","id":[],"method":"b"}]"#,
        ] {
            assert!(has_invalid_id(body.as_bytes()), "{body}");
        }
    }

    #[test]
    fn valid_ids_notifications_and_garbage_pass_through() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"socket.state"}"#,
            r#"{"jsonrpc":"2.0","id":"a","method":"socket.state"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"socket.state"}"#,
            r#"{"jsonrpc":"2.0","method":"socket.state"}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}]"#,
            r#"[1, "x"]"#,
            "not json",
            "",
        ] {
            assert!(!has_invalid_id(body.as_bytes()), "{body}");
        }
    }
}
