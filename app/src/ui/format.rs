//! Text for times and message bodies.

/// A time of day in the viewer's time zone, e.g. `14:05` (browser only; empty on the server).
#[cfg(feature = "hydrate")]
pub fn clock_time(ms: i64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
    format!("{:02}:{:02}", date.get_hours(), date.get_minutes())
}

#[cfg(not(feature = "hydrate"))]
pub fn clock_time(_ms: i64) -> String {
    String::new()
}

/// "just now", "5 min ago", "3 h ago", "2 days ago".
pub fn ago(now_ms: i64, then_ms: i64) -> String {
    let secs = ((now_ms - then_ms) / 1000).max(0);
    match secs {
        0..=59 => "just now".into(),
        60..=3_599 => format!("{} min ago", secs / 60),
        3_600..=86_399 => format!("{} h ago", secs / 3_600),
        86_400..=172_799 => "yesterday".into(),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// A piece of a message body: plain text, or a web link that may be made clickable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    Link(String),
}

/// Splits a body into text and `http(s)://` links. Everything is rendered as text nodes or as
/// the `href` of an anchor, never as HTML; only http and https links become anchors.
pub fn linkify(body: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut rest = body;
    while let Some(start) = ["https://", "http://"]
        .iter()
        .filter_map(|scheme| rest.find(scheme))
        .min()
    {
        if start > 0 {
            segments.push(Segment::Text(rest[..start].to_owned()));
        }
        let tail = &rest[start..];
        let mut end = tail
            .find(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == '"')
            .unwrap_or(tail.len());
        // Trailing punctuation usually ends the sentence, not the link.
        while end > 0 && tail[..end].ends_with(['.', ',', '!', '?', ')', ';', ':']) {
            end -= 1;
        }
        let link = &tail[..end];
        if link.len() > "https://".len() {
            segments.push(Segment::Link(link.to_owned()));
        } else {
            segments.push(Segment::Text(link.to_owned()));
        }
        rest = &tail[end..];
    }
    if !rest.is_empty() {
        segments.push(Segment::Text(rest.to_owned()));
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_split_out_and_everything_else_is_text() {
        assert_eq!(
            linkify("see https://dealnest.example/a?b=1, then <b>bold</b>"),
            vec![
                Segment::Text("see ".into()),
                Segment::Link("https://dealnest.example/a?b=1".into()),
                Segment::Text(", then <b>bold</b>".into()),
            ]
        );
        assert_eq!(
            linkify("javascript:alert(1)"),
            vec![Segment::Text("javascript:alert(1)".into())]
        );
        assert_eq!(
            linkify("(http://x.io)."),
            vec![
                Segment::Text("(".into()),
                Segment::Link("http://x.io".into()),
                Segment::Text(").".into()),
            ]
        );
        assert_eq!(linkify("http://"), vec![Segment::Text("http://".into())]);
    }

    #[test]
    fn ago_reads_naturally() {
        assert_eq!(ago(10_000, 5_000), "just now");
        assert_eq!(ago(5 * 60_000, 0), "5 min ago");
        assert_eq!(ago(3 * 3_600_000, 0), "3 h ago");
        assert_eq!(ago(30 * 3_600_000, 0), "yesterday");
        assert_eq!(ago(4 * 86_400_000, 0), "4 days ago");
    }
}
