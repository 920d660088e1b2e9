//! Request bodies: up to `proxy.max_inspect_bytes` are buffered so the policy can see their
//! size, SHA-256 and parsed JSON; the rest streams on to the upstream untouched.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

use crate::model::BodySummary;

/// Boxed error of bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The one body type the proxy sends and returns.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// A body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into()).map_err(|n| match n {}).boxed()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::<Bytes>::new().map_err(|n| match n {}).boxed()
}

/// Reads up to `max` bytes of `body` for inspection and returns the summary and a body that
/// yields every byte (inspected prefix first, then the rest).
pub async fn inspect<B>(
    mut body: B,
    declared_len: Option<u64>,
    is_json: bool,
    max: usize,
) -> Result<(BodySummary, ProxyBody), BoxError>
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let mut buf = BytesMut::new();
    let mut truncated = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Into::into)?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > max {
                truncated = true;
                break;
            }
        }
    }
    let inspected = buf.freeze();
    let sha256 = crate::identity::token::sha256_hex(&inspected);
    let size = declared_len
        .unwrap_or(inspected.len() as u64)
        .max(inspected.len() as u64);
    let json = if is_json && !truncated && !inspected.is_empty() {
        serde_json::from_slice(&inspected).ok()
    } else {
        None
    };
    let summary = BodySummary {
        size,
        sha256,
        json,
        truncated,
    };
    let out = if truncated {
        Prefixed {
            prefix: Some(inspected),
            rest: body,
        }
        .map_err(Into::into)
        .boxed()
    } else if inspected.is_empty() {
        empty()
    } else {
        full(inspected)
    };
    Ok((summary, out))
}

/// The inspected prefix followed by the rest of the original body.
struct Prefixed<B> {
    prefix: Option<Bytes>,
    rest: B,
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(p) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut h = self.rest.size_hint();
        let p = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        h.set_lower(h.lower().saturating_add(p));
        if let Some(u) = h.upper() {
            h.set_upper(u.saturating_add(p));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_json_body_is_parsed_and_passed_on() {
        let (s, b) = inspect(full(r#"{"a":1}"#), Some(7), true, 1024)
            .await
            .unwrap();
        assert_eq!(s.size, 7);
        assert!(!s.truncated);
        assert_eq!(s.json, Some(serde_json::json!({"a": 1})));
        assert_eq!(
            b.collect().await.unwrap().to_bytes(),
            Bytes::from(r#"{"a":1}"#)
        );
    }

    #[tokio::test]
    async fn large_body_is_truncated_but_forwarded_whole() {
        let data = vec![b'x'; 5000];
        let (s, b) = inspect(full(data.clone()), None, true, 1000).await.unwrap();
        assert!(s.truncated);
        assert!(s.json.is_none());
        assert_eq!(b.collect().await.unwrap().to_bytes().len(), 5000);
    }
}
