use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read config: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Syntax errors, unknown keys and wrong types, as reported by the TOML parser.
    #[error("{}:{line}: {}{message}", path.display(), key.as_deref().map(|k| format!("`{k}`: ")).unwrap_or_default())]
    Syntax {
        path: PathBuf,
        line: usize,
        /// The dotted key written at (or, inside a multi-line value, above) that line, when there is one.
        key: Option<String>,
        message: String,
    },
    /// A well-typed value that makes no sense (empty list, bad address, zero interval, ...).
    #[error("{}:{line}: `{key}`: {message}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        line: usize,
        message: String,
    },
}

impl ConfigError {
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Syntax { line, .. } | ConfigError::Invalid { line, .. } => Some(*line),
        }
    }
}
