//! `mf export --format curl`: each request as a curl command that sends it again.

use crate::model::Exchange;
use crate::store::{RecordingRead, Selection};
use crate::vocab::curl::command;

/// Writes a shell script of one command per selected exchange to `out`, as it reads them.
///
/// # Errors
/// Reading the recording or writing `out` failed.
pub(super) fn write_script(
    reader: &dyn RecordingRead,
    selection: &Selection,
    clean: &dyn Fn(&mut Exchange),
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    out.write_all(b"#!/bin/sh\n")?;
    super::export::write_each(reader, selection, clean, out, |ex, out| {
        out.write_all(command(ex).as_bytes())
    })?;
    out.flush()?;
    Ok(())
}
