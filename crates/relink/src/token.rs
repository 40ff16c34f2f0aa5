//! The bearer token: a secret that never turns into a string by accident.

use std::fmt;

/// A credential sent in the Socket.IO CONNECT packet as `{"token": ...}`.
///
/// It has a redacted `Debug`, no `Display` and no `Serialize`; the only way to read it is
/// crate-private and used only to build the CONNECT payload. So a token cannot end up in a log
/// line, an error message, a URL or a panic message through this type.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token, without the whitespace around it: files, environment variables and
    /// copy-paste add it by accident, and no server issues a token that starts or ends with
    /// it. This is the one place the rule lives, for every way a token comes in.
    /// Validation (non-empty) happens where it is used, so it can be reported as a typed
    /// error rather than a panic.
    pub fn new(token: impl Into<String>) -> Self {
        let mut token = token.into();
        let trimmed = token.trim();
        if trimmed.len() != token.len() {
            token = trimmed.to_owned();
        }
        Token(token)
    }

    /// Whether the token is empty or only whitespace (and so certain to be rejected).
    pub fn is_blank(&self) -> bool {
        self.0.is_empty()
    }

    /// The token text, for the CONNECT payload only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Token {
    fn from(token: String) -> Self {
        Token::new(token)
    }
}

impl From<&str> for Token {
    fn from(token: &str) -> Self {
        Token::new(token)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let token = Token::new("hunter2-secret");
        let shown = format!("{token:?} {:#?}", Some(&token));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn blank_tokens_are_detected() {
        assert!(Token::new("").is_blank());
        assert!(Token::new(" \t\n").is_blank());
        assert!(!Token::new(" x ").is_blank());
    }

    #[test]
    fn surrounding_whitespace_is_not_part_of_the_token() {
        for raw in ["secret", " secret ", "secret\n", "\tsecret\r\n"] {
            assert_eq!(Token::new(raw).expose(), "secret", "{raw:?}");
            assert_eq!(Token::from(raw), Token::new("secret"), "{raw:?}");
            assert_eq!(Token::from(raw.to_owned()), Token::new("secret"), "{raw:?}");
        }
        assert_eq!(Token::new("a b").expose(), "a b", "inner whitespace stays");
    }
}
