//! Query results as text for the CLI: an aligned table, CSV or JSON lines.

use std::io::Write;

use datafusion::arrow::{
    csv::WriterBuilder, json::LineDelimitedWriter, util::pretty::pretty_format_batches,
};

use crate::{QueryOutput, error::Error};

/// Output formats of `kindling query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row.
    Json,
}

/// Writes `out` in `format`.
pub fn write(out: &QueryOutput, format: Format, w: &mut dyn Write) -> Result<(), Error> {
    let internal = |e: &dyn std::fmt::Display| Error::Internal(e.to_string());
    match format {
        Format::Table => {
            let text = pretty_format_batches(&out.batches).map_err(|e| internal(&e))?;
            writeln!(w, "{text}").map_err(|e| internal(&e))?;
        }
        Format::Csv => {
            let mut writer = WriterBuilder::new().with_header(true).build(w);
            for b in &out.batches {
                writer.write(b).map_err(|e| internal(&e))?;
            }
        }
        Format::Json => {
            let mut writer = LineDelimitedWriter::new(w);
            for b in &out.batches {
                writer.write(b).map_err(|e| internal(&e))?;
            }
            writer.finish().map_err(|e| internal(&e))?;
        }
    }
    Ok(())
}
