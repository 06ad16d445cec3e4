//! What every `idbridge admin …` command shares: the options that name the
//! database, opening it, and printing a result (text, or the API's JSON) with
//! the exit code (0 done, 1 not found, 2 bad usage or configuration, 3 the
//! database failed).

use clap::Args;
use idbridge_server::admin::AdminError;
use std::path::PathBuf;
use std::process::ExitCode;

pub(crate) const NOT_FOUND: u8 = 1;
pub(crate) const USAGE: u8 = 2;
pub(crate) const DATABASE: u8 = 3;

/// Options every command that reads the database takes.
#[derive(Args, Debug)]
pub struct Common {
    /// TOML config file (its `storage.url` names the database).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Print JSON (the same as the HTTP API returns) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The config and its database.
pub(crate) async fn open(
    common: &Common,
) -> Result<(idbridge_server::config::Settings, idbridge_store::Store), ExitCode> {
    let settings = crate::load_config(&common.config)?;
    match crate::open_store(&settings).await {
        Ok(store) => Ok((settings, store)),
        Err(e) => {
            eprintln!("idbridge: {e}");
            Err(ExitCode::from(DATABASE))
        }
    }
}

/// Print what a command did, or why it failed, and its exit code.
pub(crate) fn finish(result: Result<String, AdminError>, common: &Common) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let (code, what) = match &e {
                AdminError::Invalid(_) | AdminError::Field { .. } => (USAGE, "bad input: "),
                AdminError::NotFound(_) => (NOT_FOUND, "not found: "),
                AdminError::LastIdentity(_) | AdminError::Conflict(..) => (USAGE, "refused: "),
                AdminError::Store(_) => (DATABASE, ""),
            };
            eprintln!("idbridge: {what}{e}");
            let text = e.to_string();
            if ["no such table", "no such column", "does not exist"]
                .iter()
                .any(|m| text.contains(m))
            {
                eprintln!(
                    "idbridge: the database schema is missing or older than this idbridge: run `idbridge migrate --config {}` first",
                    common.config.display()
                );
            }
            ExitCode::from(code)
        }
    }
}

/// JSON as the HTTP API returns it, indented.
pub(crate) fn pretty(value: Result<serde_json::Value, serde_json::Error>) -> String {
    match value.and_then(|v| serde_json::to_string_pretty(&v)) {
        Ok(s) => format!("{s}\n"),
        Err(e) => format!("{{\"error\": \"cannot encode the result: {e}\"}}\n"),
    }
}

/// Left-aligned columns, two spaces apart, no trailing spaces.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

pub(crate) fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}
