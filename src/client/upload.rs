//! The whole upload, as `intake upload` runs it:
//!
//! 0. unless told not to, check the archive with the server's validator (`check`);
//! 1. sign in and create the upload transaction (REST);
//! 2. open the socket with a one-time ticket and ask for presigned URLs;
//! 3. PUT the archive (parts in parallel), reading the socket meanwhile so that it
//!    stays alive;
//! 4. announce completion and follow processing until the final monitoring update;
//! 5. read the records created (REST).
//!
//! A socket that drops is opened again with a fresh ticket, at most
//! `max_reconnects` times. Everything needed to go on lives here rather than in the
//! connection: the file session id, the presigned URLs (valid for their lifetime)
//! and the ETag of every part stored, so parts already stored are never sent again
//! and completion can be announced on any new connection to the same upload (the
//! server treats a repeated completion as done). If processing ended while the
//! client was away, the socket refuses the used upload and the REST state says how
//! it ended.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::api::Api;
use super::checksum::{self, FileChecksums};
use super::progress::{Progress, StepUpdate};
use super::socket::{ConnectError, Event, Socket, socket_url};
use super::state::{FileIdentity, Persisting, ResumeState, StateFile};
use super::transfer::{self, Piece, Stored};
use super::{ClientError, Outcome, UploadOptions};

/// The content type announced for every archive.
pub const FILE_TYPE: &str = "application/zip";

/// Runs an upload to the end; see the module documentation.
pub async fn upload(
    opts: &UploadOptions,
    progress: Arc<dyn Progress>,
) -> Result<Outcome, ClientError> {
    let result = run(opts, &progress).await;
    progress.finished();
    result
}

async fn run(opts: &UploadOptions, progress: &Arc<dyn Progress>) -> Result<Outcome, ClientError> {
    let (file_name, size) = inspect(&opts.file)?;
    // A changed file is refused as changed before anything else is said about it.
    let saved = match &opts.state_dir {
        Some(dir) => Some(saved_state(opts, dir).await?),
        None => None,
    };
    if opts.check {
        super::check::check_archive(&opts.file).await?;
    }
    let api = Api::sign_in(opts.server.clone(), opts.credentials.clone()).await?;
    if let Some(old) = saved.as_ref().and_then(|(_, _, _, old)| old.as_ref()) {
        abandon(&api, old).await;
    }
    let previous = saved.as_ref().and_then(|(_, _, prev, _)| prev.clone());
    let upload_id = match &previous {
        Some(p) => {
            tracing::debug!(upload_id = %p.upload_id, "resuming");
            p.upload_id.clone()
        }
        None => api.create_upload(opts.class, opts.field).await?,
    };
    tracing::debug!(%upload_id, "upload created");
    let persist = match saved {
        Some((file, identity, previous, _)) => {
            let state = previous.unwrap_or_else(|| ResumeState {
                version: 1,
                server: opts.server.to_string(),
                class: opts.class,
                field: opts.field,
                file: identity,
                upload_id: upload_id.clone(),
                session_id: None,
                multipart: false,
                chunk_size: None,
                total_parts: 0,
                parts: Default::default(),
            });
            file.save(&state)?;
            Some(Arc::new(Persisting {
                inner: progress.clone(),
                file,
                state: std::sync::Mutex::new(state),
            }))
        }
        None => None,
    };
    let reporting: Arc<dyn Progress> = match &persist {
        Some(p) => p.clone(),
        None => progress.clone(),
    };
    let mut flow = Flow {
        api,
        opts,
        progress: reporting,
        upload_id,
        file_name,
        size,
        sock: None,
        attempts: 0,
        reconnects: 0,
        stored: Stored::default(),
        resumed: previous.is_some(),
        previous,
        persist: persist.clone(),
        reused: 0,
        sums: None,
    };
    let result = flow.run().await;
    if let Some(sock) = flow.sock.take() {
        sock.close().await;
    }
    if let Some(p) = persist
        && result.as_ref().err().is_none_or(ClientError::ends_upload)
    {
        p.file.remove();
    }
    result
}

/// The state file of this command, the file's identity, and the state an earlier
/// run left (dropped first with `--fresh`; a changed file is refused).
/// With `--fresh`, the state dropped is returned last, to cancel its session.
type Saved = (
    StateFile,
    FileIdentity,
    Option<ResumeState>,
    Option<ResumeState>,
);

async fn saved_state(opts: &UploadOptions, dir: &Path) -> Result<Saved, ClientError> {
    let path = opts.file.clone();
    let identity = tokio::task::spawn_blocking(move || FileIdentity::of(&path))
        .await
        .map_err(|e| ClientError::File(e.to_string()))?
        .map_err(|e| ClientError::File(format!("{}: {e}", opts.file.display())))?;
    let file = StateFile::new(
        dir,
        opts.server.as_str(),
        opts.class,
        opts.field,
        &opts.file,
    );
    if opts.fresh {
        let abandoned = file.load()?;
        file.remove();
        return Ok((file, identity, None, abandoned));
    }
    let previous = file.load()?;
    if let Some(p) = &previous
        && let Some(what) = p.file.differs(&identity)
    {
        return Err(ClientError::Changed(format!(
            "{} is not the file an interrupted upload (upload {}) was sending: {what}. \
             Rerun with --fresh to upload it as a new upload.",
            opts.file.display(),
            p.upload_id
        )));
    }
    Ok((file, identity, previous, None))
}

/// Cancels the file session `--fresh` abandons, so that the store drops its parts
/// (`DELETE …/files/{session}/`). One that ended already, or is gone, needs
/// nothing; any other failure only warns: the new upload does not depend on it.
async fn abandon(api: &Api, old: &ResumeState) {
    let Some(session) = &old.session_id else {
        return;
    };
    let path = format!(
        "/api/object-records/uploads/{}/files/{session}/",
        old.upload_id
    );
    match api.call(reqwest::Method::DELETE, &path, None).await {
        Ok(_) => tracing::info!(upload_id = %old.upload_id, %session, "abandoned upload cancelled"),
        Err(ClientError::Server { code, .. })
            if code == "ERR_HTTP_404" || code == "ERR_HTTP_400" => {}
        Err(e) => {
            tracing::warn!(upload_id = %old.upload_id, error = %e, "could not cancel the abandoned upload")
        }
    }
}

/// The archive's name and size; it must be a readable regular file.
fn inspect(path: &Path) -> Result<(String, u64), ClientError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ClientError::File(format!("{}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(ClientError::File(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    std::fs::File::open(path).map_err(|e| ClientError::File(format!("{}: {e}", path.display())))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "upload.zip".into());
    Ok((name, meta.len()))
}

/// Where the archive goes, from `presigned_url_ready`.
struct Ready {
    session: String,
    s3_key: String,
    multipart: bool,
    pieces: Vec<Piece>,
    /// Parts may still be sent (false when a resumed session is already completed).
    pending: bool,
}

/// What monitoring ended with.
enum Watch {
    Done(Outcome),
    /// The socket dropped; connect again and go on.
    Lost,
}

struct Flow<'a> {
    api: Api,
    opts: &'a UploadOptions,
    progress: Arc<dyn Progress>,
    upload_id: String,
    file_name: String,
    size: u64,
    sock: Option<Socket>,
    /// Drops and failed connection attempts so far (the budget).
    attempts: u32,
    /// Successful reconnections.
    reconnects: u32,
    stored: Stored,
    /// Whether this run goes on with an upload an earlier process started.
    resumed: bool,
    /// The state an earlier process saved, if any.
    previous: Option<ResumeState>,
    /// Where this run's state is saved, if anywhere.
    persist: Option<Arc<Persisting>>,
    /// Parts the store already held when this run started.
    reused: u64,
    /// The checksums the URLs are bound to, once computed.
    sums: Option<FileChecksums>,
}

impl Flow<'_> {
    async fn run(&mut self) -> Result<Outcome, ClientError> {
        let ready = match self.resume().await? {
            Some(ready) => ready,
            None => {
                let ready = self.presign().await?;
                self.remember(&ready)?;
                ready
            }
        };
        let total = ready.pieces.len() as u64;
        let done: u64 = ready
            .pieces
            .iter()
            .filter(|p| self.stored.has(p.part))
            .map(|p| p.len)
            .sum();
        self.progress.transfer_started(self.size, total, done);
        if ready.pending {
            self.transfer(&ready).await?;
        }
        self.progress.transfer_done();
        loop {
            match self.connect().await {
                Ok(()) => {}
                // The upload is used: processing ended while we were away.
                Err(ClientError::Server { code, .. }) if code == "ERR_INVALID_UUID" => {
                    match self.settled(&ready).await {
                        Ok(Some(done)) => return Ok(done),
                        Ok(None) => {
                            return Err(ClientError::server(
                                code,
                                "the server no longer accepts this upload",
                            ));
                        }
                        // The server went away again: ask once it is back.
                        Err(ClientError::Connection(why)) => {
                            self.lost(&why)?;
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
            self.complete(&ready).await;
            match self.watch(&ready).await? {
                Watch::Done(outcome) => return Ok(outcome),
                Watch::Lost => match self.settled(&ready).await {
                    Ok(Some(done)) => return Ok(done),
                    // Not settled, or the server cannot be reached (a node that
                    // crashed): reconnect, with its retries and backoff.
                    Ok(None) | Err(ClientError::Connection(_)) => {}
                    Err(e) => return Err(e),
                },
            }
        }
    }

    /// Saves the new file session in the state file, before any byte is sent.
    fn remember(&self, ready: &Ready) -> Result<(), ClientError> {
        let Some(p) = &self.persist else {
            return Ok(());
        };
        let mut state = p.state.lock().unwrap_or_else(|e| e.into_inner());
        state.session_id = Some(ready.session.clone());
        state.multipart = ready.multipart;
        state.chunk_size = ready.multipart.then(|| ready.pieces[0].len);
        state.total_parts = ready.pieces.len() as u64;
        state.parts.clear();
        p.file.save(&state)
    }

    /// Goes on with the file session an earlier process started: asks the server
    /// which parts the store holds (the parts endpoint, answered from S3) and for
    /// fresh URLs for the rest. `None` when there is no session to go on with.
    async fn resume(&mut self) -> Result<Option<Ready>, ClientError> {
        let Some(session) = self.previous.as_ref().and_then(|p| p.session_id.clone()) else {
            return Ok(None);
        };
        let path = format!(
            "/api/object-records/uploads/{}/files/{session}/parts/",
            self.upload_id
        );
        // Fresh URLs bound to our checksums, for the part size of the session.
        let request = if self.opts.checksums {
            let prev = self.previous.as_ref().expect("a session");
            let part_size = match (prev.multipart, prev.chunk_size) {
                (true, Some(c)) => Some(c),
                (false, _) => Some(self.size),
                (true, None) => None,
            };
            match part_size {
                Some(p) => {
                    let sums = self.hash(p).await?;
                    let body = json!({ "checksums": sums.to_json() });
                    self.sums = Some(sums);
                    self.api
                        .call(reqwest::Method::POST, &path, Some(body))
                        .await
                }
                None => self.api.get(&path).await,
            }
        } else {
            self.api.get(&path).await
        };
        let v = match request {
            Ok(v) => v,
            Err(ClientError::Server { code, detail })
                if code == "ERR_HTTP_404" || code == "ERR_HTTP_400" =>
            {
                return Err(ClientError::ResumeGone(format!(
                    "the interrupted upload {} cannot be resumed ({detail}); \
                     its saved state is dropped, so running the command again starts over",
                    self.upload_id
                )));
            }
            Err(e) => return Err(e),
        };
        let bad = |what: &str| ClientError::Protocol(format!("parts: {what} in {v}"));
        let pending = v["state"] == "pending";
        let multipart = v["is_multipart"].as_bool().unwrap_or(false);
        let s3_key = v["s3_key"].as_str().ok_or_else(|| bad("no s3_key"))?;
        if v["file_size"].as_u64() != Some(self.size) {
            return Err(bad("another file size"));
        }
        let mut listed = std::collections::BTreeMap::new();
        if pending {
            for p in v["parts"].as_array().ok_or_else(|| bad("no parts"))? {
                let n = p["part_number"]
                    .as_u64()
                    .ok_or_else(|| bad("a part number"))?;
                let tag = p["e_tag"].as_str().ok_or_else(|| bad("an e_tag"))?;
                listed.insert(n as u32, tag.to_string());
            }
        } else if let Some(prev) = &self.previous {
            // Completed already: what we saw is all completion needs.
            listed = prev.parts.clone();
        }
        let pieces = if multipart {
            let chunk = v["chunk_size"]
                .as_u64()
                .filter(|c| *c > 0)
                .ok_or_else(|| bad("no chunk_size"))?;
            let total = v["total_parts"]
                .as_u64()
                .ok_or_else(|| bad("no total_parts"))?;
            let mut urls: Vec<(u32, String)> =
                (1..=total as u32).map(|n| (n, String::new())).collect();
            for p in v["part_urls"].as_array().into_iter().flatten() {
                if let (Some(n), Some(url)) = (p["part"].as_u64(), p["url"].as_str())
                    && let Some(slot) = urls.get_mut(n as usize - 1)
                {
                    slot.1 = url.to_string();
                }
            }
            if pending
                && let Some((n, _)) = urls
                    .iter()
                    .find(|(n, u)| u.is_empty() && !listed.contains_key(n))
            {
                return Err(bad(&format!("neither a URL nor a stored part {n}")));
            }
            let mut pieces = transfer::pieces(self.size, chunk, &urls);
            self.bind(&v, &mut pieces);
            pieces
        } else {
            let url = v["presigned_url"].as_str().unwrap_or_default();
            if pending && url.is_empty() && listed.is_empty() {
                return Err(bad("neither a URL nor the stored object"));
            }
            let mut pieces = vec![Piece {
                part: 1,
                url: url.to_string(),
                offset: 0,
                len: self.size,
                content_type: Some(FILE_TYPE.to_string()),
                checksum: None,
            }];
            self.bind(&v, &mut pieces);
            pieces
        };
        for (n, tag) in &listed {
            self.stored.insert(*n, tag.clone());
        }
        self.reused = if pending {
            listed.len() as u64
        } else {
            pieces.len() as u64
        };
        if let Some(p) = &self.persist {
            let mut state = p.state.lock().unwrap_or_else(|e| e.into_inner());
            state.parts = listed;
            p.file.save(&state)?;
        }
        Ok(Some(Ready {
            session,
            s3_key: s3_key.to_string(),
            multipart,
            pieces,
            pending,
        }))
    }

    /// The file's checksums for parts of `part_size` (one read of the file).
    async fn hash(&self, part_size: u64) -> Result<FileChecksums, ClientError> {
        let (path, size) = (self.opts.file.clone(), self.size);
        tokio::task::spawn_blocking(move || FileChecksums::compute(&path, size, part_size))
            .await
            .map_err(|e| ClientError::File(e.to_string()))?
            .map_err(|e| ClientError::File(format!("{}: {e}", self.opts.file.display())))
    }

    /// Gives each piece the checksum its URL was signed with, when the server
    /// says it bound them (`checksum_algorithm`) for the part size we hashed.
    fn bind(&self, m: &Value, pieces: &mut [Piece]) {
        let Some(sums) = &self.sums else { return };
        if m["checksum_algorithm"] != checksum::ALGORITHM {
            return;
        }
        let single = pieces.len() == 1 && pieces[0].len == self.size;
        for p in pieces.iter_mut() {
            p.checksum = if single {
                Some(sums.object())
            } else if p.offset == (p.part as u64 - 1) * sums.part_size {
                sums.part(p.part)
            } else {
                None
            };
        }
    }

    /// Asks for presigned URLs until the server answers.
    async fn presign(&mut self) -> Result<Ready, ClientError> {
        let temp = format!(
            "temp_{}_{:08x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
            rand::random::<u32>()
        );
        let mut request = json!({
            "type": "request_presigned_url",
            "temp_upload_id": temp,
            "file_name": self.file_name,
            "file_size": self.size,
            "file_type": FILE_TYPE,
            "object_class": self.opts.class,
            "class_field": self.opts.field,
        });
        if self.opts.checksums {
            let part_size = self
                .opts
                .part_size
                .unwrap_or_else(|| checksum::default_part_size(self.size));
            let sums = self.hash(part_size).await?;
            request["checksums"] = sums.to_json();
            self.sums = Some(sums);
        }
        loop {
            self.connect().await?;
            let sock = self.sock.as_mut().expect("connected");
            if !sock.send(&request).await {
                self.lost("sending failed")?;
                continue;
            }
            loop {
                let sock = self.sock.as_mut().expect("connected");
                match sock.next().await {
                    Event::Message(v)
                        if v["type"] == "presigned_url_ready"
                            && v["message"]["temp_upload_id"] == temp =>
                    {
                        let mut ready = parse_ready(&v["message"], self.size)?;
                        self.bind(&v["message"], &mut ready.pieces);
                        return Ok(ready);
                    }
                    Event::Message(_) => {}
                    Event::Error { code, detail } => {
                        return Err(ClientError::Server { code, detail });
                    }
                    Event::Dropped(why) => {
                        self.lost(&why)?;
                        break;
                    }
                }
            }
        }
    }

    /// PUTs what is not stored yet, reading the socket meanwhile.
    async fn transfer(&mut self, ready: &Ready) -> Result<(), ClientError> {
        let http = self.api.http().clone();
        let mut sock = self.sock.take();
        let mut dropped = None;
        let result = {
            let sending = transfer::send_missing(
                &http,
                &self.opts.file,
                &ready.pieces,
                &self.stored,
                self.opts.parallel,
                &self.progress,
            );
            tokio::pin!(sending);
            loop {
                let Some(s) = sock.as_mut() else {
                    break sending.await;
                };
                let event = tokio::select! {
                    r = &mut sending => break r,
                    ev = s.next() => ev,
                };
                match event {
                    Event::Message(_) => {}
                    Event::Error { code, detail } => {
                        break Err(ClientError::Server { code, detail });
                    }
                    Event::Dropped(why) => {
                        // The PUTs go on; a new socket announces completion.
                        sock = None;
                        dropped = Some(why);
                    }
                }
            }
        };
        self.sock = sock;
        if let Some(why) = dropped {
            self.lost(&why)?;
        }
        result
    }

    /// Announces that every byte is stored (again, after a reconnect: the server
    /// ignores a completion it already has).
    async fn complete(&mut self, ready: &Ready) {
        let msg = if ready.multipart {
            let parts: Vec<Value> = self
                .stored
                .all()
                .into_iter()
                .map(|(n, tag)| json!({ "part_number": n, "e_tag": tag }))
                .collect();
            json!({ "type": "complete_multipart_upload", "upload_id": ready.session, "parts": parts })
        } else {
            json!({ "type": "upload_complete", "upload_id": ready.session, "s3_key": ready.s3_key })
        };
        if let Some(sock) = self.sock.as_mut() {
            // A failed send shows up as a drop on the next read.
            let _ = sock.send(&msg).await;
        }
    }

    /// Follows processing until the final monitoring update of our file session.
    async fn watch(&mut self, ready: &Ready) -> Result<Watch, ClientError> {
        loop {
            let Some(sock) = self.sock.as_mut() else {
                return Ok(Watch::Lost);
            };
            let v = match sock.next().await {
                Event::Message(v) => v,
                Event::Error { code, .. } if code == "ERR_INVALID_UUID" => {
                    // The upload ended between our reconnect and our message.
                    self.sock = None;
                    return Ok(Watch::Lost);
                }
                Event::Error { code, detail } => return Err(ClientError::Server { code, detail }),
                Event::Dropped(why) => {
                    self.sock = None;
                    self.lost(&why)?;
                    return Ok(Watch::Lost);
                }
            };
            let kind = v["type"].as_str().unwrap_or_default();
            if kind != "monitoring_update" && kind != "progress_update" {
                continue;
            }
            let m = &v["message"];
            if m["upload_id"]
                .as_str()
                .is_some_and(|id| id != ready.session)
            {
                continue;
            }
            let update = step_update(kind, m);
            self.progress.step(&update);
            match update.status.as_deref() {
                Some("success") if kind == "monitoring_update" => {
                    let mut message = m["message"].as_str().unwrap_or("Done").to_string();
                    let av = m["av-status"].as_str().map(str::to_string);
                    // The upload has succeeded: a failing follow-up request only costs
                    // the record ids, not the success (nor exit status 0).
                    let status = match self.api.upload_status(&self.upload_id).await {
                        Ok(status) => status,
                        Err(e) => {
                            message.push_str(&format!(
                                " (record ids not fetched: {}: {})",
                                e.code(),
                                e.detail()
                            ));
                            let count = extracted_count(m["message"].as_str().unwrap_or(""));
                            serde_json::json!({ "record_count": count })
                        }
                    };
                    return Ok(Watch::Done(self.outcome(ready, &status, message, av)));
                }
                Some("error") if kind == "monitoring_update" => {
                    return Err(ClientError::server(
                        m["error_code"].as_str().unwrap_or("ERR_PROCESSING_FAILED"),
                        m["message"].as_str().unwrap_or("Processing failed."),
                    ));
                }
                _ => {}
            }
        }
    }

    /// How the upload ended, from REST, if it has.
    async fn settled(&mut self, ready: &Ready) -> Result<Option<Outcome>, ClientError> {
        let status = self.api.upload_status(&self.upload_id).await?;
        match status["state"].as_str() {
            Some("succeeded") => {
                let n = status["record_count"].as_u64().unwrap_or_default();
                let message = format!("Done Extracted {n} files");
                Ok(Some(self.outcome(ready, &status, message, None)))
            }
            Some("failed") => {
                // The server keeps each file's final failure (code and text).
                let file = status["files"].as_array().into_iter().flatten().find(|f| {
                    f["upload_id"] == ready.session.as_str() && f["error_code"].is_string()
                });
                match file {
                    Some(f) => Err(ClientError::server(
                        f["error_code"].as_str().unwrap_or_default(),
                        f["error_message"].as_str().unwrap_or_default(),
                    )),
                    None => Err(ClientError::server(
                        "ERR_PROCESSING_FAILED",
                        "Processing failed while the client was disconnected; the server log has the cause.",
                    )),
                }
            }
            _ => Ok(None),
        }
    }

    fn outcome(
        &self,
        ready: &Ready,
        status: &Value,
        message: String,
        av: Option<String>,
    ) -> Outcome {
        let records: Vec<i64> = status["records"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        Outcome {
            upload_id: self.upload_id.clone(),
            session_id: ready.session.clone(),
            file_name: self.file_name.clone(),
            file_size: self.size,
            multipart: ready.multipart,
            parts: ready.pieces.len() as u64,
            reconnects: self.reconnects,
            resumed: self.resumed,
            reused_parts: self.reused,
            sent_parts: ready.pieces.len() as u64 - self.reused.min(ready.pieces.len() as u64),
            refused_parts: self.stored.refused(),
            message,
            av_status: av,
            record_count: status["record_count"]
                .as_u64()
                .unwrap_or(records.len() as u64),
            records,
        }
    }

    /// Notes a dropped socket against the budget.
    fn lost(&mut self, why: &str) -> Result<(), ClientError> {
        self.sock = None;
        self.attempts += 1;
        if self.attempts > self.opts.max_reconnects {
            return Err(ClientError::Connection(format!(
                "the upload socket dropped too often (last: {why})"
            )));
        }
        self.progress.reconnecting(self.attempts, why);
        Ok(())
    }

    /// Opens the socket if it is not open, with a fresh ticket each try.
    async fn connect(&mut self) -> Result<(), ClientError> {
        if self.sock.is_some() {
            return Ok(());
        }
        let reconnecting = self.attempts > 0;
        let mut failures = 0u32;
        loop {
            let attempt = async {
                let ticket = self.api.ticket().await?;
                let url = socket_url(self.api.base(), &self.upload_id, &ticket);
                Socket::connect(&url).await.map_err(|e| match e {
                    ConnectError::Refused { code, detail } => ClientError::Server { code, detail },
                    ConnectError::Unreachable(why) => ClientError::Connection(why),
                })
            };
            match attempt.await {
                Ok(sock) => {
                    self.sock = Some(sock);
                    if reconnecting {
                        self.reconnects += 1;
                    }
                    return Ok(());
                }
                Err(ClientError::Connection(why)) if reconnecting || failures < 2 => {
                    failures += 1;
                    self.attempts += 1;
                    if self.attempts > self.opts.max_reconnects {
                        return Err(ClientError::Connection(why));
                    }
                    self.progress.reconnecting(self.attempts, &why);
                    let pause = Duration::from_millis(250) * 2u32.pow(failures.min(5));
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The display view of a progress or monitoring update.
/// N of the final message "Done Extracted N files".
fn extracted_count(message: &str) -> Option<u64> {
    message
        .strip_prefix("Done Extracted ")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

fn step_update(kind: &str, m: &Value) -> StepUpdate {
    let counts = (kind == "progress_update").then(|| {
        (
            m["progress_count"].as_u64().unwrap_or_default(),
            m["total_count"].as_u64().unwrap_or_default(),
        )
    });
    StepUpdate {
        step: m["step_name"].as_str().unwrap_or("processing").to_string(),
        status: m["status"].as_str().map(str::to_string),
        counts,
        is_complete: m["is_complete"].as_bool().unwrap_or(false),
        message: m["message"].as_str().map(str::to_string),
        av_status: m["av-status"].as_str().map(str::to_string),
    }
}

/// Reads `presigned_url_ready`'s message into pieces to PUT.
fn parse_ready(m: &Value, size: u64) -> Result<Ready, ClientError> {
    let bad = |what: &str| ClientError::Protocol(format!("presigned_url_ready: {what} in {m}"));
    let session = m["upload_id"].as_str().ok_or_else(|| bad("no upload_id"))?;
    let s3_key = m["s3_key"].as_str().ok_or_else(|| bad("no s3_key"))?;
    let multipart = m["is_multipart"].as_bool().unwrap_or(false);
    let pieces = if multipart {
        let chunk = m["chunk_size"]
            .as_u64()
            .filter(|c| *c > 0)
            .ok_or_else(|| bad("no chunk_size"))?;
        let urls: Vec<(u32, String)> = m["part_urls"]
            .as_array()
            .ok_or_else(|| bad("no part_urls"))?
            .iter()
            .map(|p| {
                Some((
                    u32::try_from(p["part"].as_u64()?).ok()?,
                    p["url"].as_str()?.to_string(),
                ))
            })
            .collect::<Option<_>>()
            .ok_or_else(|| bad("a malformed part URL"))?;
        let expected = size.div_ceil(chunk);
        let numbers: Vec<u64> = urls.iter().map(|(n, _)| *n as u64).collect();
        if numbers != (1..=expected).collect::<Vec<_>>() {
            return Err(bad("part numbers that do not cover the file"));
        }
        transfer::pieces(size, chunk, &urls)
    } else {
        let url = m["presigned_url"]
            .as_str()
            .ok_or_else(|| bad("no presigned_url"))?;
        vec![Piece {
            part: 1,
            url: url.to_string(),
            offset: 0,
            len: size,
            content_type: Some(FILE_TYPE.to_string()),
            checksum: None,
        }]
    };
    Ok(Ready {
        session: session.to_string(),
        s3_key: s3_key.to_string(),
        multipart,
        pieces,
        pending: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_messages_become_pieces() {
        let m = json!({
            "upload_id": "s", "s3_key": "k", "is_multipart": true, "chunk_size": 5,
            "part_urls": [{"url": "a", "part": 1}, {"url": "b", "part": 2}], "total_parts": 2
        });
        let r = parse_ready(&m, 7).unwrap();
        assert!(r.multipart);
        assert_eq!(r.pieces[1].offset, 5);
        assert_eq!(r.pieces[1].len, 2);
        assert!(
            parse_ready(&m, 11).is_err(),
            "three parts needed, two given"
        );
        let single =
            json!({ "upload_id": "s", "s3_key": "k", "is_multipart": false, "presigned_url": "u" });
        let r = parse_ready(&single, 9).unwrap();
        assert_eq!(r.pieces.len(), 1);
        assert_eq!(r.pieces[0].content_type.as_deref(), Some(FILE_TYPE));
    }
}
