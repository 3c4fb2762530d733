//! One log line for an error and its causes. Operators read errors in one journal line, so the errno
//! that aya keeps in `source()` must be in it; but many errors (ours and aya's) already print their
//! source in their own message, so a plain walk of the chain would say things twice.

/// The error, then each cause whose text is not already in the line, joined by `: `.
pub fn one_line(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot load: {0}")]
        Repeats(#[source] std::io::Error),
        #[error("cannot load")]
        Hides(#[source] std::io::Error),
    }

    fn denied() -> std::io::Error {
        std::io::Error::from_raw_os_error(1)
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let line = one_line(&Outer::Repeats(denied()));
        assert_eq!(line.matches("Operation not permitted").count(), 1, "{line}");
    }

    #[test]
    fn a_cause_only_in_source_is_appended() {
        let line = one_line(&Outer::Hides(denied()));
        assert!(
            line.starts_with("cannot load: Operation not permitted"),
            "{line}"
        );
    }
}
