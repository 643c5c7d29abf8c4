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

/// A calendar day in the viewer's time zone (UTC on the server, which never shows days).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CalendarDay {
    pub year: i64,
    /// 1–12.
    pub month: u32,
    /// 1–31.
    pub day: u32,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];

impl CalendarDay {
    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    pub fn days(self) -> i64 {
        let year = if self.month <= 2 {
            self.year - 1
        } else {
            self.year
        };
        let era = year.div_euclid(400);
        let year_of_era = year - era * 400;
        let month = i64::from(self.month);
        let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5
            + i64::from(self.day)
            - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }

    /// The day `days` after 1970-01-01 (`civil_from_days`).
    pub fn from_days(days: i64) -> Self {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z - era * 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let mp = (5 * day_of_year + 2) / 153;
        let day = u32::try_from(day_of_year - (153 * mp + 2) / 5 + 1).unwrap_or(1);
        let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        Self { year, month, day }
    }

    fn weekday(self) -> &'static str {
        WEEKDAYS[usize::try_from(self.days().rem_euclid(7)).unwrap_or(0)]
    }

    fn month_name(self) -> &'static str {
        MONTHS[usize::try_from(self.month.saturating_sub(1)).unwrap_or(0) % 12]
    }
}

/// The calendar day of `ms` where the viewer is.
#[cfg(feature = "hydrate")]
pub fn local_day(ms: i64) -> CalendarDay {
    #[allow(clippy::cast_precision_loss)]
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
    CalendarDay {
        year: i64::from(date.get_full_year()),
        month: date.get_month() + 1,
        day: date.get_date(),
    }
}

#[cfg(not(feature = "hydrate"))]
pub fn local_day(ms: i64) -> CalendarDay {
    CalendarDay::from_days(ms.div_euclid(86_400_000))
}

/// Whether two instants fall on the same day for the viewer.
pub fn same_day(a_ms: i64, b_ms: i64) -> bool {
    local_day(a_ms) == local_day(b_ms)
}

/// "Today", "Yesterday", a weekday within the last week, else the date.
pub fn day_label(ms: i64) -> String {
    day_label_between(local_day(ms), local_day(crate::clock::now_ms()))
}

/// [`day_label`] for a day seen from `today`.
pub fn day_label_between(day: CalendarDay, today: CalendarDay) -> String {
    match today.days() - day.days() {
        0 => "Today".to_owned(),
        1 => "Yesterday".to_owned(),
        2..=6 => day.weekday().to_owned(),
        _ if day.year == today.year => {
            format!("{}, {} {}", day.weekday(), day.day, day.month_name())
        }
        _ => format!("{} {} {}", day.day, day.month_name(), day.year),
    }
}

/// An instant as ISO 8601 in UTC, for `<time datetime>`.
pub fn iso_time(ms: i64) -> String {
    let day = CalendarDay::from_days(ms.div_euclid(86_400_000));
    let secs = ms.rem_euclid(86_400_000) / 1000;
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        day.year,
        day.month,
        day.day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The full date and time where the viewer is, e.g. for a tooltip (browser only).
#[cfg(feature = "hydrate")]
pub fn full_time(ms: i64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
    let language = web_sys::window()
        .and_then(|w| w.navigator().language())
        .unwrap_or_else(|| "en".to_owned());
    String::from(date.to_locale_string(&language, &wasm_bindgen::JsValue::UNDEFINED))
}

#[cfg(not(feature = "hydrate"))]
pub fn full_time(ms: i64) -> String {
    iso_time(ms)
}

/// Up to two initials of a display name, for an avatar.
pub fn initials(name: &str) -> String {
    let mut words = name.split_whitespace();
    let first = words.next().and_then(|w| w.chars().next());
    let last = words.last().and_then(|w| w.chars().next());
    [first, last]
        .into_iter()
        .flatten()
        .flat_map(char::to_uppercase)
        .collect::<String>()
        .chars()
        .take(2)
        .collect::<String>()
}

/// The avatar's CSS classes: one of eight colours (each with white text at ≥ 4.5:1), fixed
/// per user.
pub fn avatar_class(user_id: i64) -> String {
    format!("avatar avatar--{}", user_id.rem_euclid(8))
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

    #[test]
    fn calendar_days_round_trip_and_label_naturally() {
        for days in [-1, 0, 59, 11_016, 19_000, 20_422, 2_932_896] {
            assert_eq!(CalendarDay::from_days(days).days(), days);
        }
        assert_eq!(
            CalendarDay::from_days(0),
            CalendarDay {
                year: 1970,
                month: 1,
                day: 1
            }
        );
        let today = CalendarDay {
            year: 2026,
            month: 11,
            day: 30,
        };
        let back = |n: i64| CalendarDay::from_days(today.days() - n);
        assert_eq!(day_label_between(today, today), "Today");
        assert_eq!(day_label_between(back(1), today), "Yesterday");
        assert_eq!(day_label_between(back(2), today), "Saturday");
        assert_eq!(day_label_between(back(30), today), "Saturday, 31 October");
        assert_eq!(day_label_between(back(400), today), "26 October 2025");
        assert_eq!(iso_time(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn initials_and_colours() {
        assert_eq!(initials("Ann Example"), "AE");
        assert_eq!(initials("bob"), "B");
        assert_eq!(initials("Mary Ann de la Cruz"), "MC");
        assert_eq!(initials("  "), "");
        assert_eq!(avatar_class(9), "avatar avatar--1");
        assert_eq!(avatar_class(-1), "avatar avatar--7");
    }
}
