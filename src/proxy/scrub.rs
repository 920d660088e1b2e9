//! Keeps injected secrets from coming back to the agent: an upstream that echoes the
//! request (a debug endpoint, an error page quoting the Authorization header) would hand the
//! agent the real value. Responses to requests that carried an injected secret are scrubbed:
//! every form in which the value went out (as is, percent-encoded, JSON-escaped, inside
//! base64), in headers, the reason phrase, the streamed body and trailers, is replaced by a
//! mask of the same length (so `Content-Length` stays true). The request asked for an
//! uncompressed response (`Accept-Encoding: identity`); an encoded body, which cannot be
//! checked, is not passed on.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::body::{BoxError, ProxyBody};

/// A response scrubbed of `needles`. `strict` (the request carried an injected secret): an
/// encoded body, which cannot be checked, is refused; otherwise it is passed on unchecked.
pub fn response(
    mut parts: http::response::Parts,
    body: ProxyBody,
    needles: Vec<Vec<u8>>,
    strict: bool,
    request_id: &str,
) -> Response<ProxyBody> {
    // hyper keeps the upstream's reason phrase: never pass it on here.
    parts.extensions.remove::<hyper::ext::ReasonPhrase>();
    let encoded = parts
        .headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("identity"));
    if encoded && strict {
        tracing::warn!(
            request_id,
            "encoded response to a request carrying a secret: not passed on"
        );
        return super::respond::error(
            StatusCode::BAD_GATEWAY,
            "response_unscrubbable",
            "the upstream compressed its answer to a request that carried a secret, so Clawser could not check it for the secret; it was not passed on",
            request_id,
        );
    }
    headers(&mut parts.headers, &needles);
    // An encoded body (best effort only) passes unchecked.
    let body = if encoded {
        body
    } else {
        Scrubbed::new(body, needles).boxed()
    };
    Response::from_parts(parts, body)
}

/// The mask for a value of `len` bytes.
fn mask(len: usize) -> Vec<u8> {
    let word = b"[clawser-secret]";
    (0..len)
        .map(|i| word.get(i).copied().unwrap_or(b'*'))
        .collect()
}

/// Replaces every occurrence of each needle (same-length masks) in `buf`.
fn replace_all(buf: &mut [u8], needles: &[Vec<u8>]) {
    for n in needles {
        if n.is_empty() || n.len() > buf.len() {
            continue;
        }
        let m = mask(n.len());
        let mut i = 0;
        while i + n.len() <= buf.len() {
            if &buf[i..i + n.len()] == n.as_slice() {
                buf[i..i + n.len()].copy_from_slice(&m);
                i += n.len();
            } else {
                i += 1;
            }
        }
    }
}

/// Masks secret values in response headers.
pub fn headers(h: &mut HeaderMap, needles: &[Vec<u8>]) {
    for v in h.values_mut() {
        let bytes = v.as_bytes();
        if needles
            .iter()
            .any(|n| !n.is_empty() && bytes.windows(n.len()).any(|w| w == n.as_slice()))
        {
            let mut b = bytes.to_vec();
            replace_all(&mut b, needles);
            if let Ok(new) = HeaderValue::from_bytes(&b) {
                *v = new;
            }
        }
    }
}

/// A response body with secret values masked, across frame boundaries.
pub struct Scrubbed {
    inner: ProxyBody,
    needles: Vec<Vec<u8>>,
    /// Bytes held back: only a tail that could be the start of a needle.
    carry: BytesMut,
    trailers: Option<HeaderMap>,
    ended: bool,
}

/// The length of the longest tail of `buf` that is a proper prefix of some needle: all
/// that must wait for the next frame (the rest flows on at once, so event streams do not
/// stall).
fn pending_prefix(buf: &[u8], needles: &[Vec<u8>]) -> usize {
    let mut keep = 0;
    for n in needles {
        let most = n.len().saturating_sub(1).min(buf.len());
        for k in (keep + 1..=most).rev() {
            if buf[buf.len() - k..] == n[..k] {
                keep = k;
                break;
            }
        }
    }
    keep
}

impl Scrubbed {
    /// Wraps `inner`; `needles` are the injected values' forms.
    pub fn new(inner: ProxyBody, mut needles: Vec<Vec<u8>>) -> Scrubbed {
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Scrubbed {
            inner,
            needles,
            carry: BytesMut::new(),
            trailers: None,
            ended: false,
        }
    }

    fn flush_all(&mut self) -> Option<Bytes> {
        if self.carry.is_empty() {
            return None;
        }
        let mut all = std::mem::take(&mut self.carry);
        replace_all(&mut all, &self.needles);
        Some(all.freeze())
    }
}

impl Body for Scrubbed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.ended {
                if let Some(rest) = this.flush_all() {
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.ended = true,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        this.carry.extend_from_slice(&data);
                        replace_all(&mut this.carry, &this.needles);
                        let keep = pending_prefix(&this.carry, &this.needles);
                        if this.carry.len() > keep {
                            let out = this.carry.split_to(this.carry.len() - keep);
                            return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                        }
                    }
                    Err(frame) => {
                        if let Ok(mut t) = frame.into_trailers() {
                            headers(&mut t, &this.needles);
                            this.trailers = Some(t);
                        }
                        this.ended = true;
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.carry.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // Same length in, same length out.
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::collections::VecDeque;

    struct Chunks(VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    async fn scrub(chunks: Vec<&'static str>, needle: &str) -> String {
        let body: ProxyBody = Chunks(chunks.into_iter().map(Bytes::from).collect()).boxed();
        let s = Scrubbed::new(body, vec![needle.as_bytes().to_vec()]);
        let out = s.collect().await.unwrap().to_bytes();
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn masks_values_split_across_frames() {
        let cases = [
            (vec!["auth: ghp_SECRET1 ok"], "auth: [clawser-se ok"),
            (vec!["auth: ghp_SE", "CRET1 ok"], "auth: [clawser-se ok"),
            (
                vec!["g", "h", "p_SECRET1", "ghp_SECRET1"],
                "[clawser-se[clawser-se",
            ),
            (vec!["nothing here"], "nothing here"),
            (
                vec!["data: 1\n\n", "data: ghp_SECRET1\n\n"],
                "data: 1\n\ndata: [clawser-se\n\n",
            ),
            (vec!["ghp_SECRET"], "ghp_SECRET"),
        ];
        for (chunks, want) in cases {
            let got = scrub(chunks.clone(), "ghp_SECRET1").await;
            assert_eq!(got, want, "{chunks:?}");
            assert_eq!(got.len(), chunks.concat().len());
        }
    }

    #[test]
    fn only_a_possible_start_of_a_value_waits() {
        let needles = vec![b"ghp_SECRET1".to_vec()];
        assert_eq!(pending_prefix(b"event: x\n\n", &needles), 0);
        assert_eq!(pending_prefix(b"token ghp_SE", &needles), 6);
        assert_eq!(pending_prefix(b"token g", &needles), 1);
    }

    #[test]
    fn masks_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-echo", "Bearer ghp_SECRET1".parse().unwrap());
        headers(&mut h, &[b"ghp_SECRET1".to_vec()]);
        assert_eq!(h["x-echo"], "Bearer [clawser-se");
    }
}
