//! What `intake upload` prints when it ends: one upload's result as JSON (`--json`)
//! or as lines for people, and for several archives a summary table.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::{ClientError, Outcome};

/// One archive's result as `--json` prints it: the outcome with `"ok": true`, or
/// `{"ok": false, "error_code", "detail", "refused_before_upload"}`.
pub fn json_of(result: &Result<Outcome, ClientError>) -> Value {
    match result {
        Ok(done) => {
            let mut v = serde_json::to_value(done).expect("serializable");
            v["ok"] = true.into();
            v
        }
        Err(e) => json!({
            "ok": false,
            "error_code": e.code(),
            "detail": e.detail(),
            "refused_before_upload": e.refused_before_upload(),
        }),
    }
}

/// The lines for people about a successful upload (stdout).
pub fn success_lines(done: &Outcome) -> Vec<String> {
    let mut lines = Vec::new();
    if done.resumed {
        lines.push(format!(
            "resumed upload {}: {} part(s) already stored, {} sent",
            done.upload_id, done.reused_parts, done.sent_parts
        ));
    }
    lines.push(format!(
        "{} record{} created from {} (upload {}): {}",
        done.record_count,
        if done.record_count == 1 { "" } else { "s" },
        done.file_name,
        done.upload_id,
        done.message
    ));
    let ids: Vec<String> = done.records.iter().map(i64::to_string).collect();
    lines.push(format!("records: {}", ids.join(" ")));
    if done.av_status.as_deref() == Some("skipped") {
        lines.push(format!("antivirus: {}", super::progress::SCAN_SKIPPED));
    }
    lines
}

/// The lines for people about a failure (stderr).
pub fn error_lines(e: &ClientError) -> Vec<String> {
    let mut lines = vec![format!("error: {}: {}", e.code(), e.detail())];
    if e.refused_before_upload() {
        lines.push(
            "nothing was sent: the server's validator refuses this archive (--no-check sends it anyway)"
                .into(),
        );
    }
    lines
}

/// A table of several archives' results: file, result, records, upload id.
pub fn summary_table(results: &[(PathBuf, Result<Outcome, ClientError>)]) -> String {
    let mut rows = vec![[
        "FILE".to_string(),
        "RESULT".to_string(),
        "RECORDS".to_string(),
        "UPLOAD".to_string(),
    ]];
    for (file, result) in results {
        let name = file.display().to_string();
        rows.push(match result {
            Ok(done) => [
                name,
                "ok".into(),
                done.record_count.to_string(),
                done.upload_id.clone(),
            ],
            Err(e) => [name, e.code().to_string(), "-".into(), "-".into()],
        });
    }
    let widths: Vec<usize> = (0..4)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    let ok = results.iter().filter(|(_, r)| r.is_ok()).count();
    let records: u64 = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .map(|d| d.record_count)
        .sum();
    out.push_str(&format!(
        "{ok} of {} archives uploaded, {records} records created\n",
        results.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up_and_sums() {
        let done = Outcome {
            upload_id: "u-1".into(),
            session_id: "s".into(),
            file_name: "a.zip".into(),
            file_size: 1,
            multipart: false,
            parts: 1,
            reconnects: 0,
            message: "Done".into(),
            av_status: None,
            record_count: 3,
            records: vec![1, 2, 3],
            resumed: false,
            reused_parts: 0,
            sent_parts: 1,
            refused_parts: 0,
        };
        let table = summary_table(&[
            ("a.zip".into(), Ok(done)),
            (
                "long-name.zip".into(),
                Err(ClientError::Refused {
                    code: "ERR_ARCHIVE_UNSAFE_PATH".into(),
                    detail: "x".into(),
                }),
            ),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "FILE           RESULT                   RECORDS  UPLOAD"
        );
        assert_eq!(
            lines[1],
            "a.zip          ok                       3        u-1"
        );
        assert_eq!(
            lines[2],
            "long-name.zip  ERR_ARCHIVE_UNSAFE_PATH  -        -"
        );
        assert_eq!(lines[3], "1 of 2 archives uploaded, 3 records created");
    }
}
