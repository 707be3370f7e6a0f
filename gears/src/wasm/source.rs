//! Where a module comes from, and reading it from there.

use std::path::PathBuf;

use sdk::{Context, GearError};

use super::MAX_MODULE_BYTES;

/// Where a module comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file.
    File(PathBuf),
    /// A key in a snake KV bucket.
    Kv {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
}

/// Why [`Source::parse`] refused a module's source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// `snake://` without a bucket or a key.
    #[error("{text:?}: write snake://<bucket>/<key>")]
    NoKey {
        /// The source as written.
        text: String,
    },
    /// A bucket name that snake refuses.
    #[error("{text:?}: {reason}")]
    Bucket {
        /// The source as written.
        text: String,
        /// What snake said of the name.
        reason: snake::Error,
    },
    /// A scheme other than `file://` and `snake://`.
    #[error(
        "{text:?}: unknown scheme {scheme:?}; use a path, file://<path> or snake://<bucket>/<key>"
    )]
    UnknownScheme {
        /// The source as written.
        text: String,
        /// The scheme.
        scheme: String,
    },
    /// An empty path.
    #[error("source names no file")]
    NoFile,
}

impl Source {
    /// Parses `path`, `file://path` or `snake://bucket/key`.
    ///
    /// # Errors
    ///
    /// A [`SourceError`] for an empty path, a missing bucket or key, a bucket name snake
    /// refuses, or an unknown scheme.
    pub fn parse(text: &str) -> Result<Source, SourceError> {
        if let Some(rest) = text.strip_prefix("snake://") {
            let (bucket, key) = rest
                .split_once('/')
                .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
                .ok_or_else(|| SourceError::NoKey {
                    text: text.to_owned(),
                })?;
            snake::KvConfig::new(bucket).map_err(|reason| SourceError::Bucket {
                text: text.to_owned(),
                reason,
            })?;
            return Ok(Source::Kv {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            });
        }
        if let Some((scheme, _)) = text.split_once("://")
            && scheme != "file"
        {
            return Err(SourceError::UnknownScheme {
                text: text.to_owned(),
                scheme: scheme.to_owned(),
            });
        }
        let path = text.strip_prefix("file://").unwrap_or(text);
        if path.is_empty() {
            return Err(SourceError::NoFile);
        }
        Ok(Source::File(PathBuf::from(path)))
    }

    /// The module's bytes: read from the file, or fetched from the bucket through the
    /// context's snake connection.
    pub(super) async fn fetch(&self, ctx: &Context) -> Result<Vec<u8>, GearError> {
        Ok(match self {
            Source::File(path) => read_file(path)?,
            Source::Kv { bucket, key } => {
                let snake = ctx.snake().ok_or_else(|| {
                    GearError::new("load").with_detail("snake:// needs a snake connection")
                })?;
                let fail = |e: snake::Error| {
                    GearError::new("load").with_detail(format_args!("snake://{bucket}/{key}: {e}"))
                };
                let cfg = module_bucket(bucket).map_err(fail)?;
                let kv = snake.kv(cfg).await.map_err(fail)?;
                let entry = kv.get(key).await.map_err(fail)?;
                match entry {
                    Some(entry) if !entry.value.is_empty() => entry.value.to_vec(),
                    _ => {
                        return Err(GearError::new("load")
                            .with_detail(format_args!("snake://{bucket}/{key}: no such module")));
                    }
                }
            }
        })
    }
}

/// The configuration of a KV bucket that holds modules: values up to [`MAX_MODULE_BYTES`].
/// Put modules with it, so that the gear opens the bucket with the same settings.
///
/// # Errors
///
/// A bucket name snake refuses.
pub fn module_bucket(bucket: &str) -> Result<snake::KvConfig, snake::Error> {
    Ok(snake::KvConfig::new(bucket)?.max_value_size(MAX_MODULE_BYTES))
}

/// The module in the file at `path`, refused past [`MAX_MODULE_BYTES`].
pub(super) fn read_file(path: &std::path::Path) -> Result<Vec<u8>, GearError> {
    use std::io::Read as _;
    let fail = |e: std::io::Error| {
        GearError::new("load").with_detail(format_args!("{}: {e}", path.display()))
    };
    // Read one byte past the limit, whatever the file claims to be (a pipe, a growing file).
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(fail)?
        .take(MAX_MODULE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    if bytes.len() > MAX_MODULE_BYTES {
        return Err(GearError::new("load").with_detail(format_args!(
            "{}: more than the limit of {MAX_MODULE_BYTES} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}
