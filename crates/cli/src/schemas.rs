//! `defender-ingest schemas check|list`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::Subcommand;
use defender_core::Catalog;

#[derive(Debug, Subcommand)]
pub enum SchemasCommand {
    /// Validate the table schemas: the embedded ones, or the files of a folder (--dir) before
    /// they are built in. Checks duplicate and case-colliding names, names over 45 characters,
    /// more than 500 columns, unknown types and Sentinel names.
    Check {
        /// A `table-schemas/` folder to check instead of the embedded schemas.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// List the tables with their column counts.
    List,
}

pub fn schemas(cmd: SchemasCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SchemasCommand::Check { dir } => check(dir),
        SchemasCommand::List => {
            let catalog = Catalog::embedded();
            println!("{:<42} {:>7}  notes", "table", "columns");
            for t in catalog.tables() {
                let note = if t.tvm { "TVM: never sent to Sentinel" } else { t.streaming_api.as_str() };
                println!("{:<42} {:>7}  {note}", t.table, t.columns.len());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let catalog = match &dir {
        None => Catalog::embedded(),
        Some(dir) => {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "json") {
                    let text =
                        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
                    files.push((path.display().to_string(), text));
                }
            }
            files.sort();
            Catalog::from_files(files.iter().map(|(f, t)| (f.as_str(), t.as_str())))?
        }
    };
    let problems = catalog.check();
    let columns: usize = catalog.tables().iter().map(|t| t.columns.len()).sum();
    if problems.is_empty() {
        let tvm = catalog.tables().iter().filter(|t| t.tvm).count();
        println!("ok: {} tables ({tvm} TVM), {columns} columns", catalog.tables().len());
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            println!("{p}");
        }
        println!("{} problem(s)", problems.len());
        Ok(ExitCode::from(1))
    }
}
