//! The Event History API's domain: service API keys, tenants, presigned upload URLs
//! for tenant files, and history events that may reference those files.
//!
//! [`History`] is the service the HTTP edge (`http/history.rs`) calls; it holds
//! the database and object store handles, the API-key pepper and two in-memory caches
//! (keys and tenants) so that a request normally costs no database query. Whatever is
//! cached is trusted for at most `history_cache_ttl` (default 30 s): a key revoked
//! or a tenant deleted on another node, or by the admin CLI, stops working here within
//! that time; changes made through this node take effect at once. The wire contract
//! and every choice are written down in `docs/PROTOCOL.md`, "Event History API".

pub mod cache;
pub mod error;
pub mod events;
pub mod keys;
pub mod tenants;

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretSlice};
use serde_json::Value;
use uuid::Uuid;

pub use error::{HistoryError, HistoryResult};
pub use events::NewEvent;
pub use tenants::{DatabaseName, Tenant};

use crate::config::Settings;
use crate::db::history::{CreateTenant, EventFilter, EventRow, InsertEvent, NewEventRow};
use crate::db::{Db, now_ms};
use crate::store::ObjectStore;
use cache::TtlCache;

/// Extra time a deleted tenant's files wait before the final purge, beyond the
/// upload URL lifetime and the cache TTL: clock skew between nodes and S3.
const PURGE_MARGIN: Duration = Duration::from_secs(60);
/// How often a node looks for dropped databases whose files are due for purging.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// A tenant just created; the secret is shown only now.
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub client_id: String,
    pub client_secret: String,
    pub database_name: String,
}

/// What recording an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The event is new.
    Created,
    /// The same event (same id, same `detail`) was recorded before; nothing changed.
    AlreadyRecorded,
}

/// The Event History service.
pub struct History {
    db: Db,
    store: Arc<dyn ObjectStore>,
    pepper: SecretSlice<u8>,
    /// key id → stored digest (`None`: no such unrevoked key).
    keys: TtlCache<Option<[u8; 32]>>,
    /// client id → tenant (`None`: no such tenant).
    tenants: TtlCache<Option<Tenant>>,
    upload_url_ttl: Duration,
    download_url_ttl: Duration,
    cache_ttl: Duration,
}

impl History {
    /// The service on `db` and `store`; `pepper` keys the API-key hashes.
    pub fn new(
        db: Db,
        store: Arc<dyn ObjectStore>,
        pepper: Vec<u8>,
        settings: &Settings,
    ) -> History {
        let cache_ttl = settings.history.cache_ttl;
        History {
            db,
            store,
            pepper: pepper.into(),
            keys: TtlCache::new(cache_ttl),
            tenants: TtlCache::new(cache_ttl),
            upload_url_ttl: settings.history.upload_url_ttl,
            download_url_ttl: settings.uploads.download_url_ttl,
            cache_ttl,
        }
    }

    /// Creates a service API key labelled `label`; returns the key (shown once).
    pub async fn create_api_key(&self, label: &str) -> Result<String, sqlx::Error> {
        let generated = keys::generate(self.pepper.expose_secret());
        self.db
            .create_api_key(&generated.id, label, &generated.hash)
            .await?;
        Ok(generated.key)
    }

    /// Checks an `X-API-Key` value.
    pub async fn authenticate(&self, raw: Option<&str>) -> HistoryResult<()> {
        let key = raw
            .and_then(keys::parse)
            .ok_or(HistoryError::UnauthorizedApiKey)?;
        let stored = match self.keys.get(key.id) {
            Some(stored) => stored,
            None => {
                let stored = self
                    .db
                    .api_key_hash(key.id)
                    .await?
                    .as_deref()
                    .and_then(keys::decode_hash);
                self.keys.insert(key.id, stored);
                stored
            }
        };
        match stored {
            Some(stored) if keys::matches(self.pepper.expose_secret(), &key, &stored) => Ok(()),
            _ => Err(HistoryError::UnauthorizedApiKey),
        }
    }

    /// Resolves an `X-Client-Id` value to its tenant (whose database may be missing).
    pub async fn tenant(&self, client_id: Option<&str>) -> HistoryResult<Tenant> {
        let client_id = client_id
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or(HistoryError::UnauthorizedClient)?;
        let tenant = match self.tenants.get(client_id) {
            Some(tenant) => tenant,
            None => {
                let tenant = self
                    .db
                    .tenant_by_client_id(client_id)
                    .await?
                    .map(|row| Tenant {
                        client_id: row.client_id,
                        database_name: row.database_name,
                        database_exists: row.database_exists,
                    });
                self.tenants.insert(client_id, tenant.clone());
                tenant
            }
        };
        tenant.ok_or(HistoryError::TenantDbUnavailable)
    }

    /// Forgets everything cached, so that the next requests see the database as it is
    /// (after changes made behind this node's back, e.g. in tests or by an operator).
    pub fn forget_cached(&self) {
        self.keys.clear();
        self.tenants.clear();
    }

    /// Creates a tenant with a new client id and secret.
    pub async fn create_tenant(
        &self,
        database_name: &DatabaseName,
        client_label: &str,
    ) -> HistoryResult<NewTenant> {
        let client_id = tenants::new_client_id();
        let client_secret = tenants::new_client_secret();
        let created = self
            .db
            .create_tenant(
                &client_id,
                client_label,
                &tenants::client_secret_hash(&client_secret),
                database_name.as_str(),
            )
            .await?;
        match created {
            CreateTenant::Created => {
                self.tenants.remove(&client_id);
                Ok(NewTenant {
                    client_id,
                    client_secret,
                    database_name: database_name.as_str().to_string(),
                })
            }
            CreateTenant::NameTaken => Err(HistoryError::ClientAlreadyExists),
            CreateTenant::NameBeingPurged => Err(HistoryError::DatabaseBeingDeleted(
                database_name.as_str().to_string(),
            )),
        }
    }

    /// How long after a tenant's deletion its files are purged once more: until then a
    /// presigned upload URL issued before the deletion (or by a node whose cache still
    /// knew the tenant) may still write under its prefix.
    pub fn purge_delay(&self) -> Duration {
        self.upload_url_ttl + self.cache_ttl + PURGE_MARGIN
    }

    /// Deletes a tenant and its events at once, deletes its files now and schedules a
    /// final purge of its prefix after [`History::purge_delay`]. The database name
    /// stays taken until that purge.
    pub async fn delete_tenant(&self, tenant: &Tenant) -> HistoryResult<()> {
        let purge_after = now_ms() + self.purge_delay().as_millis() as i64;
        let deleted = self
            .db
            .delete_tenant(&tenant.client_id, purge_after)
            .await?;
        self.tenants.remove(&tenant.client_id);
        let Some(name) = deleted else {
            // Deleted concurrently by another request.
            return Err(HistoryError::TenantDbUnavailable);
        };
        // Best effort: the scheduled purge retries whatever fails here.
        if let Err(e) = self.store.delete_prefix(&format!("{name}/")).await {
            tracing::warn!(error = %e, database = %name, "deleting a deleted tenant's files; the scheduled purge will retry");
        }
        Ok(())
    }

    /// Purges the files of dropped databases due at `now` (epoch ms) and frees their
    /// names. Safe to run on several nodes at once. Returns how many were purged.
    pub async fn purge_due(&self, now: i64) -> anyhow::Result<usize> {
        let mut purged = 0;
        for name in self.db.due_purges(now).await? {
            match self.store.delete_prefix(&format!("{name}/")).await {
                Ok(objects) => {
                    self.db.finish_purge(&name, now).await?;
                    tracing::info!(database = %name, objects, "purged a deleted tenant's files");
                    purged += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, database = %name, "purging a deleted tenant's files; will retry")
                }
            }
        }
        Ok(purged)
    }

    /// Runs [`History::purge_due`] every [`PURGE_INTERVAL`], forever.
    pub async fn purge_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(PURGE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.purge_due(now_ms()).await {
                tracing::warn!(error = format!("{e:#}"), "history purge");
            }
        }
    }

    /// A presigned URL for one `PUT` of a new file of `tenant`, at
    /// `<database_name>/<uuid4>`, and the file id.
    pub async fn upload_url(&self, tenant: &Tenant) -> HistoryResult<(String, Uuid)> {
        // A version 4 id from the thread's CSPRNG (ChaCha, seeded by the OS), not a
        // `getrandom` system call per URL as `Uuid::new_v4` makes.
        let file_id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let url = self
            .store
            .presign_put_any(&tenant.file_key(&file_id), self.upload_url_ttl)
            .await?;
        Ok((url, file_id))
    }

    /// Records an event for `tenant`. A file it references must exist under the
    /// tenant's prefix. Recording the same event again changes nothing.
    pub async fn record_event(&self, tenant: &Tenant, event: &NewEvent) -> HistoryResult<Recorded> {
        if let Some(file_id) = &event.file_id
            && self.store.head(&tenant.file_key(file_id)).await?.is_none()
        {
            return Err(HistoryError::FileNotFound(file_id.to_string()));
        }
        let event_id = event.event_id.to_string();
        let file_id = event.file_id.map(|f| f.to_string());
        let inserted = self
            .db
            .insert_event(&NewEventRow {
                database_name: &tenant.database_name,
                event_id: &event_id,
                event_time: event.event_time_ms,
                event_type_id: &event.event_type_id,
                record_id: &event.record_id,
                file_id: file_id.as_deref(),
                detail: &event.detail.to_string(),
                envelope: &event.envelope.to_string(),
            })
            .await?;
        match inserted {
            InsertEvent::Inserted => Ok(Recorded::Created),
            InsertEvent::Exists(stored) => {
                let same = serde_json::from_str::<Value>(&stored).is_ok_and(|v| v == event.detail);
                if same {
                    Ok(Recorded::AlreadyRecorded)
                } else {
                    Err(HistoryError::EventConflict(event_id))
                }
            }
            InsertEvent::NoDatabase => {
                self.tenants.remove(&tenant.client_id);
                Err(HistoryError::TenantNotFound(tenant.database_name.clone()))
            }
        }
    }

    /// A page of `tenant`'s events matching `filter`, newest first, and their number.
    pub async fn list_events(
        &self,
        tenant: &Tenant,
        filter: &EventFilter,
        limit: i64,
        offset: i64,
    ) -> HistoryResult<(Vec<EventRow>, i64)> {
        Ok(self
            .db
            .list_events(&tenant.database_name, filter, limit, offset)
            .await?)
    }

    /// A presigned download URL for the file of `tenant`'s event `event_id`, and the
    /// file id.
    pub async fn event_file_url(
        &self,
        tenant: &Tenant,
        event_id: &Uuid,
    ) -> HistoryResult<(String, String)> {
        let event = self
            .db
            .event(&tenant.database_name, &event_id.to_string())
            .await?
            .ok_or(HistoryError::EventNotFound)?;
        let file_id = event.file_id.ok_or(HistoryError::EventHasNoFile)?;
        let key = format!("{}/{file_id}", tenant.database_name);
        if self.store.head(&key).await?.is_none() {
            return Err(HistoryError::EventHasNoFile);
        }
        let url = self
            .store
            .presign_get(&key, self.download_url_ttl, None)
            .await?;
        Ok((url, file_id))
    }
}
