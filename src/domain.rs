//! Domain types shared by the edge, the pipeline and the database: account types,
//! field types, and the validated shapes of users, classes, fields and uploads.

use serde::{Deserialize, Serialize};

/// The platform's account types (see `shared/CATALYST.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum AccountType {
    /// Everything, including user management.
    SuperAdmin,
    /// Configures classes and fields; creates records anywhere.
    ConfigAdmin,
    /// Staff: creates records in any class.
    Internal,
    /// Outside users: create records only in classes they were granted.
    External,
    /// Single-task users: like external.
    OneTimeCompletion,
}

impl AccountType {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::SuperAdmin => "super_admin",
            AccountType::ConfigAdmin => "config_admin",
            AccountType::Internal => "internal",
            AccountType::External => "external",
            AccountType::OneTimeCompletion => "one_time_completion",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<AccountType> {
        Some(match s {
            "super_admin" => AccountType::SuperAdmin,
            "config_admin" => AccountType::ConfigAdmin,
            "internal" => AccountType::Internal,
            "external" => AccountType::External,
            "one_time_completion" => AccountType::OneTimeCompletion,
            _ => return None,
        })
    }

    /// May create and change object classes, fields and grants.
    pub fn can_configure(self) -> bool {
        matches!(self, AccountType::SuperAdmin | AccountType::ConfigAdmin)
    }

    /// May create records in every class without a grant.
    pub fn creates_anywhere(self) -> bool {
        matches!(
            self,
            AccountType::SuperAdmin | AccountType::ConfigAdmin | AccountType::Internal
        )
    }
}

/// The type of a class field (also its schema in the OpenAPI document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    Integer,
    Decimal,
    Checkbox,
    SingleSelect,
    MultiSelect,
    Phone,
    Email,
    Date,
    Time,
    Datetime,
    User,
    /// A file held in the object store.
    Document,
}

impl FieldType {
    /// Every type, in documentation order.
    pub const ALL: [FieldType; 13] = [
        FieldType::Text,
        FieldType::Integer,
        FieldType::Decimal,
        FieldType::Checkbox,
        FieldType::SingleSelect,
        FieldType::MultiSelect,
        FieldType::Phone,
        FieldType::Email,
        FieldType::Date,
        FieldType::Time,
        FieldType::Datetime,
        FieldType::User,
        FieldType::Document,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Integer => "integer",
            FieldType::Decimal => "decimal",
            FieldType::Checkbox => "checkbox",
            FieldType::SingleSelect => "single_select",
            FieldType::MultiSelect => "multi_select",
            FieldType::Phone => "phone",
            FieldType::Email => "email",
            FieldType::Date => "date",
            FieldType::Time => "time",
            FieldType::Datetime => "datetime",
            FieldType::User => "user",
            FieldType::Document => "document",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<FieldType> {
        FieldType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A user as the rest of the system sees it.
#[derive(Debug, Clone)]
pub struct User {
    /// Primary key.
    pub id: i64,
    /// Login e-mail, unique.
    pub email: String,
    /// What the user may do.
    pub account_type: AccountType,
}

/// An object class.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectClass {
    pub id: i64,
    pub name: String,
    pub identifier: String,
    pub description: String,
    pub created_at: String,
    pub created_by: i64,
    pub modified_at: String,
    pub modified_by: i64,
    pub record_count: i64,
}

/// A field of an object class.
#[derive(Debug, Clone, Serialize)]
pub struct ClassField {
    pub id: i64,
    pub object_class: i64,
    pub label: String,
    pub alias: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    pub created_at: String,
}

/// Declares a closed set of stored names: the enum, `as_str`, `parse`, `ALL`,
/// `Display` and `Serialize` (as the name). Rows decode them by name too
/// (`crate::db`'s `stored_by_name!`).
macro_rules! stored_names {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stored (and wire) name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            /// Parses the stored name.
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

stored_names! {
    /// The life of an upload transaction.
    pub enum UploadState {
        /// Created; files may be requested and uploaded.
        Open => "open",
        /// A completed file is being processed.
        Processing => "processing",
        /// Processing finished with records created; the upload id is used.
        Succeeded => "succeeded",
        /// Processing failed for good; the upload id is used.
        Failed => "failed",
        /// Abandoned: past its expiry with nothing processed; the sweeper removed
        /// what was uploaded.
        Expired => "expired",
    }
}

impl UploadState {
    /// The upload is finished and its id can no longer be used.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            UploadState::Succeeded | UploadState::Failed | UploadState::Expired
        )
    }
}

stored_names! {
    /// The life of one uploaded file (one `presigned_url_ready`).
    pub enum FileState {
        /// URLs issued; the client is uploading.
        Pending => "pending",
        /// The object is verified and its processing job queued.
        Completed => "completed",
        /// Processed: its records exist.
        Processed => "processed",
        /// Refused or failed for good; no records.
        Failed => "failed",
    }
}

stored_names! {
    /// A durable job's state.
    pub enum JobState {
        /// Waiting for `run_at`.
        Queued => "queued",
        /// Claimed by a worker that heartbeats it.
        Running => "running",
        /// Done.
        Succeeded => "succeeded",
        /// Failed for good.
        Failed => "failed",
    }
}

stored_names! {
    /// What a job does.
    pub enum JobKind {
        /// Verify, scan, extract, save and create the records of one uploaded file.
        ProcessUploadFile => "process_upload_file",
        /// POST a signed webhook about a settled upload (`uploads::webhook`).
        DeliverWebhook => "deliver_webhook",
    }
}

stored_names! {
    /// The steps of the seed's processing, as `step_name` on the wire.
    pub enum Step {
        /// The file landed; processing is queued (also retries and final failures
        /// outside any other step).
        UploadComplete => "upload_complete",
        /// Antivirus on the archive as uploaded.
        AntivirusScan => "antivirus_scan",
        /// Opening the archive and extracting its files.
        ExtractingFile => "extracting_file",
        /// Scanning and saving each extracted file.
        SavingFiles => "saving_files",
        /// Creating one record per file.
        CreatingRecords => "creating_records",
    }
}

stored_names! {
    /// The `av-status` of a monitoring update.
    pub enum AvStatus {
        /// No scanner is configured.
        Skipped => "skipped",
        /// A scan is running (or the archive was too big to scan whole).
        Scanning => "scanning",
        /// No threat found.
        Clean => "clean",
        /// A threat was found; the upload is quarantined.
        Infected => "infected",
    }
}

/// Formats epoch milliseconds as an ISO 8601 UTC timestamp with microseconds.
pub fn iso_ms(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

stored_names! {
    /// What happened to an object record (the platform's `event_type`).
    pub enum RecordEventType {
        /// The record was created.
        RecordCreated => "record_created",
    }
}

stored_names! {
    /// Who or what caused a record event (the platform's `source_type`).
    pub enum EventSourceType {
        /// A person, through the REST API or the page.
        User => "user",
        /// A platform sequence (workflow); not produced here.
        Sequence => "sequence",
        /// The service itself, e.g. an upload's processing.
        System => "system",
        /// An MCP tool call; not produced here.
        Mcp => "mcp",
    }
}

/// The source of a record event: `source_type`, `source_name`, `source_id` and
/// `source_info` of the platform's record history.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSource {
    /// Who or what.
    pub source_type: EventSourceType,
    /// A human-readable name: the user's e-mail, or `upload`.
    pub source_name: String,
    /// The user's id, or the upload's id, as text.
    pub source_id: String,
    /// Details; for an upload also the file session and (per record) the entry.
    pub source_info: serde_json::Map<String, serde_json::Value>,
}

impl EventSource {
    /// A user acting through the REST API.
    pub fn user(user: &User) -> EventSource {
        let mut info = serde_json::Map::new();
        info.insert("user_id".into(), user.id.into());
        info.insert("account_type".into(), user.account_type.as_str().into());
        EventSource {
            source_type: EventSourceType::User,
            source_name: user.email.clone(),
            source_id: user.id.to_string(),
            source_info: info,
        }
    }

    /// The processing of one uploaded file (`file_session`) of upload `upload_id`.
    pub fn upload(upload_id: &str, file_session: &str, file_name: &str) -> EventSource {
        let mut info = serde_json::Map::new();
        info.insert("upload_id".into(), upload_id.into());
        info.insert("file_session".into(), file_session.into());
        info.insert("file_name".into(), file_name.into());
        EventSource {
            source_type: EventSourceType::System,
            source_name: "upload".into(),
            source_id: upload_id.into(),
            source_info: info,
        }
    }
}
