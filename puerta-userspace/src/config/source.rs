//! Where in the file a problem is: byte spans to line numbers, lines to the key written there, and
//! errors that carry both.

use std::path::Path;

use toml::Spanned;

use super::ConfigError;

/// Replaces serde's wording where it would puzzle an operator.
pub(super) fn explain(message: &str) -> String {
    if message.contains("untagged enum RawEndpoint") {
        return "each endpoint is \"host:port\" or { address = \"host:port\", weight = N, \
                proxy_protocol = \"off\"|\"v1\"|\"v2\" }"
            .to_string();
    }
    message.to_string()
}

/// Turns byte spans into line numbers and builds errors that point at them.
pub(super) struct Source<'a> {
    pub(super) text: &'a str,
    pub(super) path: &'a Path,
}

impl Source<'_> {
    pub(super) fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text[..end].bytes().filter(|b| *b == b'\n').count() + 1
    }

    /// The dotted key (`section.key`) whose value covers `line`: the nearest `key = ...` at or above
    /// it, prefixed by the `[section]` it is in. Lets type errors name their key, which the TOML parser's
    /// message does not.
    pub(super) fn key_at_line(&self, line: usize) -> Option<String> {
        let lines: Vec<&str> = self.text.lines().take(line).collect();
        let (at, key) = lines.iter().enumerate().rev().find_map(|(i, l)| {
            let l = l.trim();
            if l.starts_with('[') {
                return Some((i, None));
            }
            let (key, _) = l.split_once('=')?;
            let key = key.trim();
            let plain = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            plain.then(|| (i, Some(key.to_string())))
        })?;
        let key = key?;
        let section = lines[..at].iter().rev().find_map(|l| {
            let l = l.trim();
            l.strip_prefix('[')
                .and_then(|rest| rest.split(']').next())
                .map(|s| s.trim().to_string())
        });
        Some(match section {
            Some(s) => format!("{s}.{key}"),
            None => key,
        })
    }

    pub(super) fn invalid<T>(
        &self,
        key: &str,
        span: &Spanned<T>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            key: key.to_string(),
            line: self.line_of(span.span().start),
            message: message.into(),
        }
    }

    pub(super) fn positive(&self, key: &str, value: &Spanned<u64>) -> Result<u64, ConfigError> {
        match *value.get_ref() {
            0 => Err(self.invalid(key, value, "must be greater than 0")),
            v => Ok(v),
        }
    }
}
