//! The run configuration: one TOML file, unknown keys rejected, every field defaulted, checked
//! before anything starts. Relative paths are taken from the current directory.
//!
//! ```toml
//! [source.files]
//! paths = ["examples/sample/*.ndjson.gz"]   # files or globs; gzip is detected
//!
//! [archive]
//! url = "out/archive"        # a path, file://, az://container/prefix or abfss://fs@account.dfs.core.windows.net/prefix
//! roll_size_mb = 64          # roll a Parquet file at this encoded size
//! roll_seconds = 300         # ... or this long after it was opened
//! zstd_level = 3
//!
//! [pipeline]
//! flush_rows = 65536         # the decoder cuts a batch at this many rows,
//! flush_mb = 32              # ... this many MB of input,
//! flush_seconds = 5          # ... or this age
//! budget_mb = 64             # raw input in flight between source and decoder
//! ```

use std::{path::Path, time::Duration};

use anyhow::{Context, bail};
use defender_core::FlushRule;
use defender_pipeline::PipelineOptions;
use defender_sinks::ArchiveConfig;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub source: SourceConfig,
    pub archive: Option<ArchiveSection>,
    #[serde(default)]
    pub pipeline: PipelineSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub files: Option<FilesSource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSource {
    pub paths: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSection {
    pub url: String,
    #[serde(default = "defaults::roll_size_mb")]
    pub roll_size_mb: u64,
    #[serde(default = "defaults::roll_seconds")]
    pub roll_seconds: u64,
    #[serde(default = "defaults::zstd_level")]
    pub zstd_level: i32,
}

impl ArchiveSection {
    /// An archive at `url` with every other setting at its default (for `--archive`).
    pub fn with_url(url: &str) -> Self {
        Self {
            url: url.to_string(),
            roll_size_mb: defaults::roll_size_mb(),
            roll_seconds: defaults::roll_seconds(),
            zstd_level: defaults::zstd_level(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    #[serde(default = "defaults::flush_rows")]
    pub flush_rows: usize,
    #[serde(default = "defaults::flush_mb")]
    pub flush_mb: usize,
    #[serde(default = "defaults::flush_seconds")]
    pub flush_seconds: u64,
    #[serde(default = "defaults::budget_mb")]
    pub budget_mb: usize,
}

impl Default for PipelineSection {
    fn default() -> Self {
        Self {
            flush_rows: defaults::flush_rows(),
            flush_mb: defaults::flush_mb(),
            flush_seconds: defaults::flush_seconds(),
            budget_mb: defaults::budget_mb(),
        }
    }
}

mod defaults {
    pub fn roll_size_mb() -> u64 {
        64
    }
    pub fn roll_seconds() -> u64 {
        300
    }
    pub fn zstd_level() -> i32 {
        3
    }
    pub fn flush_rows() -> usize {
        65_536
    }
    pub fn flush_mb() -> usize {
        32
    }
    pub fn flush_seconds() -> u64 {
        5
    }
    pub fn budget_mb() -> usize {
        64
    }
}

impl Config {
    /// Reads and checks a config file; errors name the file, the line and what was expected.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let p = &self.pipeline;
        for (key, value) in [
            ("pipeline.flush_rows", p.flush_rows),
            ("pipeline.flush_mb", p.flush_mb),
            ("pipeline.budget_mb", p.budget_mb),
        ] {
            if value == 0 {
                bail!("`{key}` must be at least 1");
            }
        }
        if let Some(a) = &self.archive {
            if a.roll_size_mb == 0 {
                bail!("`archive.roll_size_mb` must be at least 1");
            }
            if !(1..=22).contains(&a.zstd_level) {
                bail!("`archive.zstd_level` must be between 1 and 22, got {}", a.zstd_level);
            }
            if a.url.trim().is_empty() {
                bail!("`archive.url` is empty: expected a path, file://, az:// or abfss:// URL");
            }
        }
        if let Some(f) = &self.source.files
            && f.paths.is_empty()
        {
            bail!("`source.files.paths` is empty: expected at least one file or glob");
        }
        Ok(())
    }

    pub fn pipeline_options(&self) -> PipelineOptions {
        let p = &self.pipeline;
        PipelineOptions {
            flush: FlushRule {
                max_rows: p.flush_rows,
                max_bytes: p.flush_mb << 20,
                max_age: Duration::from_secs(p.flush_seconds),
            },
            budget_bytes: p.budget_mb << 20,
            ..PipelineOptions::default()
        }
    }

    pub fn archive_config(&self) -> ArchiveConfig {
        let mut c = ArchiveConfig::default();
        if let Some(a) = &self.archive {
            c.roll_bytes = (a.roll_size_mb << 20) as usize;
            c.roll_age = Duration::from_secs(a.roll_seconds);
            c.zstd_level = a.zstd_level;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../../examples/local.toml");
        let c = Config::parse(text).unwrap();
        assert!(c.source.files.is_some());
        assert!(c.archive.is_some());
    }

    #[test]
    fn an_unknown_key_names_its_line_and_the_expected_keys() {
        let err = Config::parse("[archive]\nurl = \"x\"\nroll_size = 3\n").unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("unknown field `roll_size`, expected one of `url`, `roll_size_mb`"), "{err}");
    }

    #[test]
    fn a_wrong_type_names_its_line_and_the_expected_type() {
        let err = Config::parse("[pipeline]\nflush_rows = \"many\"\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("invalid type: string \"many\", expected usize"), "{err}");
    }

    #[test]
    fn values_out_of_range_name_the_key() {
        let err = Config::parse("[archive]\nurl = \"x\"\nzstd_level = 40\n").unwrap_err().to_string();
        assert_eq!(err, "`archive.zstd_level` must be between 1 and 22, got 40");
        let err = Config::parse("[source.files]\npaths = []\n").unwrap_err().to_string();
        assert_eq!(err, "`source.files.paths` is empty: expected at least one file or glob");
    }
}
