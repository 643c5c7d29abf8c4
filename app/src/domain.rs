//! Validated input types, parsed once at the edge (both in forms on the client and in server
//! functions). Code behind the edge takes these types and never re-checks.

use crate::error::ApiError;

/// Counts characters the way a user does (Unicode scalar values), not bytes.
fn char_len(text: &str) -> usize {
    text.chars().count()
}

fn has_control_chars(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// A username: 3–32 characters of `[a-z0-9_.-]`. Input is trimmed and lower-cased first so
/// `Ann` and `ann` are the same account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let name = raw.trim().to_lowercase();
        if !(3..=32).contains(&char_len(&name)) {
            return Err(ApiError::invalid(
                "username",
                "username must be 3–32 characters",
            ));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(*c)))
        {
            return Err(ApiError::invalid(
                "username",
                format!("username may only contain a–z, 0–9, '_', '.', '-' (found '{bad}')"),
            ));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Trims `raw` and checks it is `min..=max` characters without control characters.
fn bounded_text(raw: &str, field: &str, max: usize) -> Result<String, ApiError> {
    let text = raw.trim();
    let len = char_len(text);
    if len == 0 || len > max {
        return Err(ApiError::invalid(
            field,
            format!("{} must be 1–{max} characters", field.replace('_', " ")),
        ));
    }
    if has_control_chars(text) {
        return Err(ApiError::invalid(
            field,
            format!(
                "{} must not contain control characters",
                field.replace('_', " ")
            ),
        ));
    }
    Ok(text.to_owned())
}

/// A display name: 1–64 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        bounded_text(raw, "display_name", 64).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password: at least 8 characters. The upper bound keeps hashing cost bounded.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 256;

    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let len = char_len(raw);
        if len < Self::MIN_CHARS {
            return Err(ApiError::invalid(
                "password",
                "password must be at least 8 characters",
            ));
        }
        if len > Self::MAX_CHARS {
            return Err(ApiError::invalid(
                "password",
                "password must be at most 256 characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A group channel name: 1–80 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelName(String);

impl ChannelName {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        bounded_text(raw, "name", 80).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A message body: 1–4000 characters after trimming. Newlines and tabs are allowed; other
/// control characters are not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody(String);

impl MessageBody {
    pub const MAX_CHARS: usize = 4000;

    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let text = raw.trim();
        let len = char_len(text);
        if len == 0 {
            return Err(ApiError::invalid("body", "message must not be empty"));
        }
        if len > Self::MAX_CHARS {
            return Err(ApiError::invalid(
                "body",
                format!("message is {len} characters; the limit is 4000"),
            ));
        }
        if text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
        {
            return Err(ApiError::invalid(
                "body",
                "message must not contain control characters",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The client's idempotency key for a send: a UUID, stored in its canonical hyphenated
/// lower-case form so `ABC…` and `abc…` are the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        uuid::Uuid::parse_str(raw.trim())
            .map(|id| Self(id.hyphenated().to_string()))
            .map_err(|_| ApiError::invalid("client_id", "client_id must be a UUID"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A positive database id (users, channels, messages).
pub fn parse_id(raw: i64, field: &str) -> Result<i64, ApiError> {
    if raw > 0 {
        Ok(raw)
    } else {
        Err(ApiError::invalid(
            field,
            format!("{field} must be a positive id"),
        ))
    }
}

/// A sequence number: 0 or more (0 means "before the first message").
pub fn parse_seq(raw: i64, field: &str) -> Result<i64, ApiError> {
    if raw >= 0 {
        Ok(raw)
    } else {
        Err(ApiError::invalid(
            field,
            format!("{field} must not be negative"),
        ))
    }
}

/// A page size: 1..=max, `default` when absent.
pub fn parse_limit(raw: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    match raw {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid(
            "limit",
            format!("limit must be between 1 and {max}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: ApiError) -> String {
        err.field().unwrap_or_default().to_owned()
    }

    #[test]
    fn username_rules() {
        assert_eq!(Username::parse("  Ann_1 ").unwrap().as_str(), "ann_1");
        assert_eq!(field_of(Username::parse("ab").unwrap_err()), "username");
        assert!(Username::parse(&"a".repeat(32)).is_ok());
        assert!(Username::parse(&"a".repeat(33)).is_err());
        assert!(Username::parse("ann smith").is_err());
        assert!(Username::parse("änn").is_err());
        assert!(Username::parse("a.b-c_d").is_ok());
    }

    #[test]
    fn display_name_rules() {
        assert_eq!(DisplayName::parse(" Ann ").unwrap().as_str(), "Ann");
        assert_eq!(
            field_of(DisplayName::parse("   ").unwrap_err()),
            "display_name"
        );
        assert!(DisplayName::parse(&"é".repeat(64)).is_ok());
        assert!(DisplayName::parse(&"é".repeat(65)).is_err());
        assert!(DisplayName::parse("a\u{7}b").is_err());
    }

    #[test]
    fn password_rules() {
        assert_eq!(
            field_of(Password::parse("1234567").unwrap_err()),
            "password"
        );
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse(&"x".repeat(257)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("secret-pw").unwrap()),
            "Password(***)"
        );
    }

    #[test]
    fn channel_name_rules() {
        assert!(ChannelName::parse(&"n".repeat(80)).is_ok());
        assert_eq!(
            field_of(ChannelName::parse(&"n".repeat(81)).unwrap_err()),
            "name"
        );
        assert!(ChannelName::parse(" ").is_err());
    }

    #[test]
    fn message_body_rules() {
        assert_eq!(MessageBody::parse("  hi \n").unwrap().as_str(), "hi");
        assert_eq!(field_of(MessageBody::parse(" \n\t ").unwrap_err()), "body");
        assert!(MessageBody::parse(&"x".repeat(4000)).is_ok());
        assert!(MessageBody::parse(&format!("  {}  ", "x".repeat(4000))).is_ok());
        assert!(MessageBody::parse(&"x".repeat(4001)).is_err());
        assert!(MessageBody::parse("line one\nline\ttwo").is_ok());
        assert!(MessageBody::parse("bell\u{7}").is_err());
    }

    #[test]
    fn client_id_is_canonical_uuid() {
        let id = ClientId::parse("67E55044-10B1-426F-9247-BB680E5FE0C8").unwrap();
        assert_eq!(id.as_str(), "67e55044-10b1-426f-9247-bb680e5fe0c8");
        assert_eq!(
            field_of(ClientId::parse("not-a-uuid").unwrap_err()),
            "client_id"
        );
    }

    #[test]
    fn ids_seqs_limits() {
        assert!(parse_id(0, "channel_id").is_err());
        assert_eq!(parse_id(7, "channel_id").unwrap(), 7);
        assert!(parse_seq(-1, "seq").is_err());
        assert_eq!(parse_seq(0, "seq").unwrap(), 0);
        assert_eq!(parse_limit(None, 50, 200).unwrap(), 50);
        assert!(parse_limit(Some(0), 50, 200).is_err());
        assert!(parse_limit(Some(201), 50, 200).is_err());
        assert_eq!(parse_limit(Some(200), 50, 200).unwrap(), 200);
    }
}
