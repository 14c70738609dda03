//! Reading a Server-Sent Events stream event by event.

use serde_json::Value;

/// A Server-Sent Events stream, read event by event.
pub struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    /// GETs the stream at `url` signed with `credential` (a header), resuming after event
    /// `last` when given.
    pub async fn open(url: &str, credential: (&str, &str), last: Option<u64>) -> Self {
        let mut request = reqwest::Client::new()
            .get(url)
            .header(credential.0, credential.1);
        if let Some(last) = last {
            request = request.header("Last-Event-ID", last.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Events {
            response,
            buffer: String::new(),
        }
    }

    /// The next event's id, name and data; `None` when the stream ends (or breaks).
    pub async fn next(&mut self) -> Option<(u64, String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if !block.contains("event:") {
                    continue;
                }
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                };
                let data = serde_json::from_str(&field("data:")).unwrap();
                return Some((field("id:").parse().unwrap(), field("event:"), data));
            }
            let chunk = self.response.chunk().await.ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Every event until the stream ends.
    pub async fn all(mut self) -> Vec<(u64, String, Value)> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}
