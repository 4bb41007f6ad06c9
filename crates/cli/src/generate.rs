//! `defender-ingest generate`.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::{Context, bail};
use clap::Args;
use defender_core::Catalog;
use defender_gen::{GenOptions, Target};

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Tables to generate, comma-separated (default: every table of the embedded schemas).
    #[arg(long, value_delimiter = ',')]
    tables: Vec<String>,
    /// How many records to write.
    #[arg(long, conflicts_with = "size")]
    records: Option<u64>,
    /// How much to write (uncompressed), e.g. 200MB, 1.5GB, 64KiB.
    #[arg(long)]
    size: Option<String>,
    /// Seed of the generator: the same seed and options give the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// One bare record per line (the storage-export shape) instead of Event Hubs message bodies.
    #[arg(long)]
    bare: bool,
    /// Gzip the output.
    #[arg(long)]
    gzip: bool,
    /// Fraction of records with realistic quirks (numbers as strings, unknown columns, ...).
    #[arg(long, default_value_t = 0.0)]
    quirks: f64,
    /// Fraction of broken records (each becomes a dead letter).
    #[arg(long, default_value_t = 0.0)]
    bad: f64,
    /// Output file (default: standard output).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Write what was generated (records per table, expected dead letters) to this JSON file.
    #[arg(long)]
    ledger: Option<PathBuf>,
}

pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().with_context(|| format!("size `{s}`: expected a number and a unit such as 200MB"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        u => bail!("size `{s}`: unknown unit `{u}` (expected B, KB, MB, GB, KiB, MiB or GiB)"),
    };
    Ok((n * mult) as u64)
}

pub fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    for (name, v) in [("--quirks", args.quirks), ("--bad", args.bad)] {
        if !(0.0..=1.0).contains(&v) {
            bail!("{name} must be a fraction between 0 and 1, got {v}");
        }
    }
    let catalog = Catalog::embedded();
    for t in &args.tables {
        if catalog.get(t).is_none() {
            bail!("unknown table `{t}` (see `defender-ingest schemas list`)");
        }
    }
    let target = match (&args.records, &args.size) {
        (Some(n), _) => Target::Records(*n),
        (None, Some(s)) => Target::Bytes(parse_size(s)?),
        (None, None) => Target::Records(1000),
    };
    let options = GenOptions {
        seed: args.seed,
        tables: args.tables.clone(),
        target,
        envelope: !args.bare,
        quirks: args.quirks,
        bad: args.bad,
        ..GenOptions::default()
    };
    let out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(File::create(path).with_context(|| format!("cannot create {}", path.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let ledger = if args.gzip {
        let mut gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::default());
        let ledger = defender_gen::generate(&catalog, &options, &mut gz)?;
        gz.finish()?;
        ledger
    } else {
        defender_gen::generate(&catalog, &options, &mut out)?
    };
    out.flush()?;
    if let Some(path) = &args.ledger {
        std::fs::write(path, serde_json::to_string_pretty(&ledger)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!("generated {} lines, {} bytes", ledger.lines, ledger.bytes);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_size("200MB").unwrap(), 200_000_000);
        assert_eq!(parse_size("1.5 GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_size("64KiB").unwrap(), 65_536);
        assert_eq!(parse_size("10").unwrap(), 10);
        assert_eq!(
            parse_size("3 parsecs").unwrap_err().to_string(),
            "size `3 parsecs`: unknown unit `parsecs` (expected B, KB, MB, GB, KiB, MiB or GiB)"
        );
    }
}
