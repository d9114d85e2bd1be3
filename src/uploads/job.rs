//! What a `process_upload_file` job carries: written by [`super::complete`] when a
//! file is verified, read by [`super::worker`] when the job runs. One type for both
//! sides, so the two can never disagree on the payload's shape.

use serde::{Deserialize, Serialize};

use crate::db::jobs::NewJob;
use crate::domain::JobKind;

/// The payload of a `process_upload_file` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPayload {
    /// The file session to process.
    pub upload_file_id: String,
    /// Its upload transaction.
    pub upload_id: String,
}

impl JobPayload {
    /// The kind of job this payload belongs to.
    pub const KIND: JobKind = JobKind::ProcessUploadFile;

    /// The job's unique key: one job per file, however often completion is sent.
    pub fn dedupe_key(&self) -> String {
        format!("{}:{}", Self::KIND.as_str(), self.upload_file_id)
    }

    /// The job to enqueue for this payload.
    pub fn new_job(&self, max_attempts: i64) -> NewJob {
        NewJob {
            kind: Self::KIND,
            dedupe_key: self.dedupe_key(),
            payload: self.to_json(),
            max_attempts,
        }
    }

    /// The stored JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a payload of strings serializes")
    }

    /// Parses a stored payload.
    pub fn parse(text: &str) -> Result<JobPayload, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_the_stored_shape() {
        let p = JobPayload {
            upload_file_id: "f".into(),
            upload_id: "u".into(),
        };
        assert_eq!(p.to_json(), r#"{"upload_file_id":"f","upload_id":"u"}"#);
        assert_eq!(JobPayload::parse(&p.to_json()).unwrap(), p);
        assert_eq!(p.dedupe_key(), "process_upload_file:f");
    }
}
