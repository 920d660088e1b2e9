//! Request bodies: up to `proxy.max_inspect_bytes` are buffered so the policy can see their
//! size, SHA-256 and parsed JSON; the rest streams on to the upstream untouched.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

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

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// No data for `proxy.body_timeout`.
    #[error("no request body data for {0:?} (proxy.body_timeout)")]
    Idle(Duration),
    /// The client's stream failed.
    #[error("{0}")]
    Read(BoxError),
}

/// Reads up to `max` bytes of `body` for inspection and returns the summary and a body that
/// yields every byte (inspected prefix first, then the rest). Waiting longer than `idle` for
/// the next piece of the body fails, here and while the rest streams.
pub async fn inspect<B>(
    mut body: B,
    declared_len: Option<u64>,
    max: usize,
    idle: Duration,
) -> Result<(BodySummary, ProxyBody, Bytes), BodyError>
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let mut buf = BytesMut::new();
    let mut truncated = false;
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(BodyError::Idle(idle)),
            Ok(None) => break,
            Ok(Some(f)) => f.map_err(|e| BodyError::Read(e.into()))?,
        };
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
    let size = match declared_len {
        Some(n) => Some(n.max(inspected.len() as u64)),
        None if !truncated => Some(inspected.len() as u64),
        None => None,
    };
    // Whatever the Content-Type says: a GraphQL mutation sent as text/plain is still JSON.
    let json = if !truncated && looks_like_json(&inspected) {
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
            prefix: Some(inspected.clone()),
            rest: body,
            idle,
            timer: None,
        }
        .boxed()
    } else if inspected.is_empty() {
        empty()
    } else {
        full(inspected.clone())
    };
    Ok((summary, out, inspected))
}

/// A cheap first look before parsing: JSON text starts with one of these (after spaces).
fn looks_like_json(b: &[u8]) -> bool {
    b.iter()
        .find(|c| !c.is_ascii_whitespace())
        .is_some_and(|c| {
            matches!(
                c,
                b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n'
            )
        })
}

/// The inspected prefix followed by the rest of the original body, which must keep coming
/// (no gap longer than `idle`).
struct Prefixed<B> {
    prefix: Option<Bytes>,
    rest: B,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(p) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        let this = &mut *self;
        match Pin::new(&mut this.rest).poll_frame(cx) {
            Poll::Ready(r) => {
                this.timer = None;
                Poll::Ready(r.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::Idle(idle).into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
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
        let (s, b, _) = inspect(full(r#"{"a":1}"#), Some(7), 1024, IDLE)
            .await
            .unwrap();
        assert_eq!(s.size, Some(7));
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
        let (s, b, _) = inspect(full(data.clone()), None, 1000, IDLE).await.unwrap();
        assert!(s.truncated);
        assert!(s.json.is_none());
        assert_eq!(s.size, None, "a streamed body's size is unknown");
        assert_eq!(b.collect().await.unwrap().to_bytes().len(), 5000);
        let (s, _, _) = inspect(full(data.clone()), Some(50_000_000), 1000, IDLE)
            .await
            .unwrap();
        assert_eq!(s.size, Some(50_000_000), "the declared length is reported");
    }

    #[tokio::test]
    async fn json_is_parsed_whatever_the_content_type() {
        let q = r#"{"query":"mutation { mergePullRequest(input: {}) { clientMutationId } }"}"#;
        let (s, _, _) = inspect(full(q), None, 1024, IDLE).await.unwrap();
        assert!(s.json.is_some());
        assert_eq!(s.size, Some(q.len() as u64));
        let (s, _, _) = inspect(full("not json"), None, 1024, IDLE).await.unwrap();
        assert!(s.json.is_none());
    }

    /// A body that sends `first` and then nothing, forever.
    fn stalled(first: usize) -> ProxyBody {
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes, BoxError>::new(4);
        tokio::spawn(async move {
            let _ = tx.send_data(Bytes::from(vec![b'x'; first])).await;
            std::future::pending::<()>().await;
            drop(tx);
        });
        body.boxed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_times_out_while_inspected() {
        let r = inspect(stalled(10), None, 1000, IDLE).await;
        assert!(matches!(r, Err(BodyError::Idle(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_times_out_while_streamed() {
        let (s, b, _) = inspect(stalled(2000), None, 1000, IDLE).await.unwrap();
        assert!(s.truncated);
        let Err(err) = b.collect().await else {
            panic!("the stream must fail")
        };
        assert!(err.to_string().contains("body_timeout"), "{err}");
    }

    const IDLE: Duration = Duration::from_secs(30);
}
