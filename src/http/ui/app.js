// intake's upload page: sign in, choose a class and its document field, upload a
// ZIP archive over the upload socket's flow (presigned URL, parallel part PUTs,
// completion), follow processing live, then list the records created. The same
// flow as `intake upload` (src/client/), including reconnects: the file session,
// presigned URLs and stored parts' ETags outlive a dropped socket.
'use strict';

const PARALLEL = 4;          // part PUTs at once
const PART_ATTEMPTS = 4;     // tries per part (network errors and 5xx)
const MAX_RECONNECTS = 10;   // socket reconnects per upload
const SHOWN_RECORDS = 100;   // records fetched for the result table
const FILE_TYPE = 'application/zip';
const MIB = 1024 * 1024;

const $ = (id) => document.getElementById(id);
const session = {
  access: sessionStorage.getItem('intake.access'),
  refresh: sessionStorage.getItem('intake.refresh'),
};
let chosenFiles = [];
let fields = [];

/** An error the server (or the object store) reported: code and text. */
class ServerError extends Error {
  constructor(code, detail) { super(`${code}: ${detail}`); this.code = code; this.detail = detail; }
}

// ---- REST ------------------------------------------------------------------

function restError(status, body) {
  const code = (body && typeof body.code === 'string') ? body.code : `ERR_HTTP_${status}`;
  let detail = `HTTP ${status}`;
  if (body && typeof body.detail === 'string') detail = body.detail;
  else if (body && typeof body === 'object') {
    const parts = Object.entries(body).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(' ') : v}`);
    if (parts.length) detail = parts.join('; ');
  }
  return new ServerError(code, detail);
}

async function api(method, path, body, renewed = false) {
  const headers = { 'Accept': 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (session.access) headers['Authorization'] = `JWT ${session.access}`;
  let r;
  try {
    r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ServerError('ERR_CONNECTION', `The server cannot be reached (${e.message}).`);
  }
  if (r.status === 401 && !renewed && session.refresh && path !== '/api/auth/token/') {
    if (await renew()) return api(method, path, body, true);
  }
  const data = await r.json().catch(() => null);
  if (!r.ok) {
    if (r.status === 401 && path !== '/api/auth/token/') signOut();
    throw restError(r.status, data);
  }
  return data;
}

async function renew() {
  try {
    const r = await fetch('/api/auth/token/refresh/', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ refresh: session.refresh }),
    });
    if (!r.ok) return false;
    const data = await r.json();
    setTokens(data.access, session.refresh);
    return true;
  } catch { return false; }
}

function setTokens(access, refresh) {
  session.access = access; session.refresh = refresh;
  if (access) sessionStorage.setItem('intake.access', access); else sessionStorage.removeItem('intake.access');
  if (refresh) sessionStorage.setItem('intake.refresh', refresh); else sessionStorage.removeItem('intake.refresh');
}

// ---- Signing in and choosing ---------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const email = $('email').value.trim();
  const password = $('password').value;
  $('sign-in-error').textContent = '';
  if (!email || !password) { $('sign-in-error').textContent = 'Enter your e-mail and password.'; return; }
  try {
    const tokens = await api('POST', '/api/auth/token/', { email, password });
    setTokens(tokens.access, tokens.refresh);
    $('password').value = '';
    await enter();
  } catch (e) {
    $('sign-in-error').textContent = e.detail || e.message;
  }
}

function signOut() {
  setTokens(null, null);
  $('who').hidden = true;
  for (const id of ['choose', 'progress', 'results', 'again']) $(id).hidden = true;
  $('sign-in').hidden = false;
}

async function enter() {
  const me = await api('GET', '/api/users/me/');
  $('who-email').textContent = me.email;
  $('who').hidden = false;
  $('sign-in').hidden = true;
  $('choose').hidden = false;
  await loadClasses();
  $('class').focus();
}

function option(value, text) {
  const o = document.createElement('option');
  o.value = value; o.textContent = text;
  return o;
}

async function loadClasses() {
  const page = await api('GET', '/api/object-classes/?limit=1000');
  const select = $('class');
  select.replaceChildren(option('', 'Choose a class…'));
  for (const c of page.results) select.append(option(c.id, c.name));
  if (page.results.length === 1) select.value = String(page.results[0].id);
  await loadFields();
}

async function loadFields() {
  const classId = $('class').value;
  const select = $('field');
  select.replaceChildren();
  fields = [];
  $('field-hint').hidden = true;
  if (classId) {
    try {
      fields = (await api('GET', `/api/object-classes/${classId}/fields/`)).filter((f) => f.type === 'document');
    } catch (e) { $('choose-error').textContent = e.detail || e.message; }
    for (const f of fields) select.append(option(f.id, `${f.label} (${f.alias})`));
    $('field-hint').hidden = fields.length > 0;
  }
  updateStart();
}

let cancelUpload = null; // set while the bytes of an upload are going up
let pauseUpload = null;  // likewise: pauses, or resumes a paused upload
let choosing = 0; // the latest choice; an older one's late check is ignored

/** Why `file` is not a ZIP archive, or null when it looks like one. */
async function notZip(file) {
  if (!/\.zip$/i.test(file.name)) return 'is not a ZIP archive (its name does not end in .zip).';
  let head;
  try { head = new Uint8Array(await file.slice(0, 4).arrayBuffer()); } catch { return 'cannot be read.'; }
  // A ZIP starts with a local header (PK\x03\x04), or is empty (PK\x05\x06).
  const zip = head.length === 4 && head[0] === 0x50 && head[1] === 0x4b
    && ((head[2] === 3 && head[3] === 4) || (head[2] === 5 && head[3] === 6));
  return zip ? null : 'is not a ZIP archive (its content does not start like one).';
}

/** Takes one file, several (a queue, uploaded one after another), or none. */
function chooseFile(input) {
  const files = input ? (input instanceof File ? [input] : [...input]) : [];
  const choice = ++choosing;
  chosenFiles = [];
  $('choose-error').textContent = '';
  $('file-name').textContent = files.length === 1
    ? `${files[0].name} · ${size(files[0].size)}`
    : files.length > 1 ? `${files.length} archives · ${size(files.reduce((a, f) => a + f.size, 0))}` : '';
  updateStart();
  if (!files.length) return;
  // Refused here, before a byte is sent: only ZIP archives become records.
  Promise.all(files.map(notZip)).then((whys) => {
    if (choice !== choosing) return;
    const bad = files.map((f, i) => [f, whys[i]]).filter(([, why]) => why);
    if (bad.length) {
      $('choose-error').textContent = bad.map(([f, why]) => `“${f.name}” ${why}`).join(' ') + ' Choose ZIP archives (.zip) only.';
      updateStart();
      return;
    }
    chosenFiles = files;
    if (files.length === 1 && resumable(files[0])) $('file-name').textContent += ' · resumes the interrupted upload of this file';
    updateStart();
  });
}

function updateStart() {
  $('start').disabled = !($('class').value && $('field').value && chosenFiles.length);
}

// ---- Progress display ----------------------------------------------------------

const STEP_ORDER = ['upload', 'antivirus_scan', 'extracting_file', 'saving_files', 'creating_records'];

function size(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function stepState(step, text, cls) {
  const li = $(`s-${step}`);
  if (!li) return;
  $(`t-${step}`).textContent = text;
  li.classList.remove('active', 'done', 'failed');
  if (cls) li.classList.add(cls);
}

function stepCount(step, count, total) {
  const bar = $(`p-${step}`);
  if (!bar) return;
  bar.max = Math.max(total, 1);
  bar.value = count;
}

function announce(text) { $('status').textContent = text; }

/** A clean failed state: `step` (or, without one, the step in progress) is
 *  marked failed and no other step stays active. */
function failSteps(step) {
  const active = STEP_ORDER.filter((s) => $(`s-${s}`).classList.contains('active'));
  const failed = step && $(`s-${step}`) ? step : active[active.length - 1];
  for (const s of active) if (s !== failed) stepState(s, 'stopped');
  if (failed) stepState(failed, 'failed', 'failed');
}

/** `12.3 MiB/s · about 5 s left`, from the bytes sent since `started`. */
function speed(sent, total, started) {
  const secs = (performance.now() - started) / 1000;
  if (secs < 0.5 || sent <= 0) return '';
  const rate = sent / secs;
  const left = Math.ceil((total - sent) / rate);
  const eta = left >= 120 ? `${Math.round(left / 60)} min` : `${left} s`;
  return ` · ${size(rate)}/s${sent < total ? ` · about ${eta} left` : ''}`;
}

function resetProgress() {
  for (const step of STEP_ORDER) {
    stepState(step, 'waiting');
    stepCount(step, 0, 1);
  }
  $('failure').textContent = '';
  announce('');
}

/** Shows one `progress_update` or `monitoring_update` message. */
function showUpdate(type, m) {
  const step = m.step_name;
  if (type === 'progress_update') {
    stepCount(step, m.progress_count, m.total_count);
    const done = m.is_complete;
    stepState(step, `${m.progress_count} of ${m.total_count}${done ? ' · done' : ''}`, done ? 'done' : 'active');
    return;
  }
  const text = m.message || m.status;
  if (step === 'upload_complete') {
    // Queued, or a retry of the whole job.
    announce(m.status === 'retrying' ? text : 'Upload received; processing queued.');
    return;
  }
  if (m.status === 'success') {
    stepState(step, text, 'done');
    // The final success closes the earlier steps too.
    for (const s of ['antivirus_scan', 'extracting_file']) {
      const li = $(`s-${s}`);
      if (li && !li.classList.contains('done')) stepState(s, s === step ? text : 'done', 'done');
    }
    const av = m['av-status'];
    if (av) stepState('antivirus_scan', av === 'skipped' ? 'skipped (no scanner configured)' : av, 'done');
  } else if (m.status === 'error') {
    // The text goes once, below the steps (#failure); the steps only show where.
    failSteps(step);
  } else {
    stepState(step, text, 'active');
    if (step === 'antivirus_scan' && m['av-status']) stepState(step, `${text} (${m['av-status']})`, 'active');
  }
}

// ---- The upload socket -----------------------------------------------------------

/** The upload socket with reconnects: a fresh ticket each time, and the last
 *  request (presign or completion) sent again on the new connection. */
class UploadSocket {
  constructor(uploadId, onMessage, onFatal) {
    this.uploadId = uploadId; this.onMessage = onMessage; this.onFatal = onFatal;
    this.ws = null; this.attempts = 0; this.closed = false; this.pending = null; this.reconnecting = false;
  }

  url(ticket) {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${scheme}//${location.host}/ws/object-records/uploads/${this.uploadId}/?uuid=${encodeURIComponent(ticket)}`;
  }

  async open() {
    const { uuid } = await api('GET', '/api/users/ws-auth/');
    const ws = new WebSocket(this.url(uuid));
    await new Promise((resolve, reject) => {
      let greeted = false;
      ws.onmessage = (event) => {
        let msg;
        try { msg = JSON.parse(event.data); } catch { return; }
        if (msg.type === 'error') {
          const err = new ServerError(msg.error_code, msg.detail);
          this.closed = true;
          if (!greeted) reject(err); else this.onFatal(err);
          return;
        }
        if (!greeted) {
          greeted = true;
          if (msg.type === 'connection_established') resolve(); else reject(new ServerError('ERR_PROTOCOL', 'unexpected greeting'));
          return;
        }
        this.onMessage(msg);
      };
      ws.onclose = () => {
        if (!greeted) { reject(new ServerError('ERR_CONNECTION', 'The upload socket closed.')); return; }
        if (this.ws === ws && !this.closed) this.lost();
      };
    });
    this.ws = ws;
    if (this.pending) this.ws.send(JSON.stringify(this.pending));
  }

  /** Sends `msg` now, and again after any reconnect until `settle()`. */
  request(msg) {
    this.pending = msg;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  settle() { this.pending = null; }

  async lost() {
    if (this.reconnecting || this.closed) return;
    this.reconnecting = true;
    this.ws = null;
    while (!this.closed) {
      this.attempts += 1;
      if (this.attempts > MAX_RECONNECTS) { this.onFatal(new ServerError('ERR_CONNECTION', 'The upload socket dropped too often.')); break; }
      announce(`Connection lost; reconnecting (attempt ${this.attempts})…`);
      await new Promise((r) => setTimeout(r, Math.min(250 * 2 ** this.attempts, 8000)));
      try { await this.open(); announce('Reconnected.'); break; } catch (e) {
        if (e.code !== 'ERR_CONNECTION') { this.closed = true; this.onFatal(e); break; }
      }
    }
    this.reconnecting = false;
  }

  close() { this.closed = true; if (this.ws) this.ws.close(); }
}

// ---- Integrity: CRC32C of each part, bound into its URL ------------------------------------
// The server signs each part's checksum into its URL (`checksums`, docs/PROTOCOL.md), so
// the store refuses a part whose bytes changed on the way; it is then sent again. CRC32C
// rather than crypto.subtle's SHA-256: that needs a secure context and cannot hash a
// whole file incrementally. Hand-written (a table, ~20 lines): no build step, no package.

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** Continues CRC32C `crc` (0 to start) over `bytes`. */
function crc32c(crc, bytes) {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

function crcBase64(crc) {
  return btoa(String.fromCharCode(crc >>> 24, (crc >>> 16) & 0xff, (crc >>> 8) & 0xff, crc & 0xff));
}

/** The `checksums` field for `file` cut at `partSize`: one read of the file. */
async function fileChecksums(file, partSize, onProgress) {
  const parts = [];
  let whole = 0;
  for (let offset = 0; offset < file.size; offset += partSize) {
    const end = Math.min(file.size, offset + partSize);
    let part = 0;
    for (let at = offset; at < end; at += 4 * MIB) {
      const bytes = new Uint8Array(await file.slice(at, Math.min(end, at + 4 * MIB)).arrayBuffer());
      part = crc32c(part, bytes);
      whole = crc32c(whole, bytes);
      onProgress(Math.min(end, at + 4 * MIB));
    }
    parts.push(crcBase64(part));
  }
  return { algorithm: 'crc32c', part_size: partSize, parts, object: crcBase64(whole) };
}

/** Gives each piece the checksum its URL was signed with, if the server bound them. */
function bindChecksums(pieces, info, sums, fileSize) {
  if (!sums || info.checksum_algorithm !== 'crc32c') return pieces;
  for (const p of pieces) {
    p.checksum = pieces.length === 1 && p.len === fileSize ? sums.object : sums.parts[p.part - 1];
  }
  return pieces;
}

// ---- PUTs to the object store ----------------------------------------------------------

/** PUTs in flight, so that Cancel can stop them. */
const inflight = new Set();

function put(url, blob, contentType, checksum, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    inflight.add(xhr);
    xhr.onloadend = () => inflight.delete(xhr);
    xhr.onabort = () => reject({ final: true, error: new ServerError('ERR_CANCELLED', 'The upload was cancelled.') });
    xhr.open('PUT', url);
    if (contentType) xhr.setRequestHeader('Content-Type', contentType);
    if (checksum) xhr.setRequestHeader('x-amz-checksum-crc32c', checksum);
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        const tag = xhr.getResponseHeader('ETag');
        if (tag) resolve(tag); else reject({ final: true, error: new ServerError('ERR_PROTOCOL', 'The object store sent no ETag.') });
        return;
      }
      const code = /<Code>([^<]*)<\/Code>/.exec(xhr.responseText || '');
      const why = `${xhr.status}${code ? ' ' + code[1] : ''}`;
      // BadDigest (S3; Garage: InvalidDigest): the bytes changed on their way after
      // hashing; send them again.
      const corrupt = checksum && xhr.status === 400 && code && ['BadDigest', 'InvalidDigest'].includes(code[1]);
      const retry = corrupt || xhr.status >= 500 || xhr.status === 408 || xhr.status === 429;
      reject({ final: !retry, error: new ServerError('ERR_S3_REJECTED', `The object store refused the upload (${why}).`) });
    };
    xhr.onerror = () => reject({ final: false, error: new ServerError('ERR_CONNECTION', 'The object store cannot be reached.') });
    xhr.send(blob);
  });
}

/** PUTs every piece not in `stored`, PARALLEL at once, with retries. */
async function transfer(file, pieces, stored, onBytes, halted = () => false) {
  const loaded = new Map();
  const report = () => onBytes([...loaded.values()].reduce((a, b) => a + b, 0));
  const queue = pieces.filter((p) => !stored.has(p.part));
  for (const p of pieces) if (stored.has(p.part)) loaded.set(p.part, p.len);
  async function worker() {
    while (queue.length) {
      // Paused or cancelled: start no new PUT.
      if (halted()) throw new ServerError('ERR_CANCELLED', 'The upload was stopped.');
      const p = queue.shift();
      for (let attempt = 1; ; attempt++) {
        try {
          const blob = file.slice(p.offset, p.offset + p.len);
          const tag = await put(p.url, blob, p.contentType, p.checksum, (n) => { loaded.set(p.part, n); report(); });
          stored.set(p.part, tag);
          loaded.set(p.part, p.len); report();
          break;
        } catch (e) {
          loaded.set(p.part, 0); report();
          if (e.final || halted() || attempt >= PART_ATTEMPTS) throw e.error || e;
          await new Promise((r) => setTimeout(r, 500 * 2 ** (attempt - 1)));
        }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(PARALLEL, queue.length || 1) }, worker));
}

function piecesOf(m, fileSize) {
  if (!m.is_multipart) return [{ part: 1, url: m.presigned_url, offset: 0, len: fileSize, contentType: FILE_TYPE }];
  return m.part_urls.map(({ url, part }) => {
    const offset = (part - 1) * m.chunk_size;
    return { part, url, offset, len: Math.min(m.chunk_size, fileSize - offset), contentType: null };
  });
}

// ---- Resume after a reload ---------------------------------------------------------------
// The file session of an upload in progress is kept in localStorage; after a reload
// (or a crash) choosing the same file again (name, size, modification time) and the
// same class and field goes on with that session: the server lists the parts the
// store holds (GET …/files/{session}/parts/, fresh URLs for the rest) and only the
// missing ones are sent. Browsers cannot reopen a file by themselves, so the person
// chooses it again.

const RESUME_KEY = 'intake.resume';

function saveResume(state) { localStorage.setItem(RESUME_KEY, JSON.stringify(state)); }
function forgetResume() { localStorage.removeItem(RESUME_KEY); }

/** The saved session for `file`, if it is the one an interrupted upload sent. */
function resumable(file, classId, fieldId) {
  let s = null;
  try { s = JSON.parse(localStorage.getItem(RESUME_KEY) || 'null'); } catch { return null; }
  if (!s || s.name !== file.name || s.size !== file.size || s.lastModified !== file.lastModified) return null;
  if (classId !== undefined && (s.classId !== classId || s.fieldId !== fieldId)) return null;
  return s;
}

/** The pieces of a resumed session: stored parts have no URL (never sent again). */
function resumedPieces(info, fileSize) {
  if (!info.is_multipart) return [{ part: 1, url: info.presigned_url || '', offset: 0, len: fileSize, contentType: FILE_TYPE }];
  const urls = new Map(info.part_urls.map(({ part, url }) => [part, url]));
  return Array.from({ length: info.total_parts }, (_, i) => {
    const part = i + 1;
    const offset = i * info.chunk_size;
    return { part, url: urls.get(part) || '', offset, len: Math.min(info.chunk_size, fileSize - offset), contentType: null };
  });
}

// ---- The whole upload ------------------------------------------------------------------

/** Uploads the chosen archives one after another; several get a queue list
 *  (each line its archive's outcome) and a total at the end. */
async function startUpload(event) {
  event.preventDefault();
  const files = chosenFiles;
  const classId = Number($('class').value);
  const fieldId = Number($('field').value);
  if (!files.length || !classId || !fieldId) return;
  const field = fields.find((f) => f.id === fieldId);
  $('choose-error').textContent = '';
  $('start').disabled = true;
  $('again').hidden = true;
  const queue = $('queue');
  queue.replaceChildren();
  queue.hidden = files.length < 2;
  const lines = files.map((f) => {
    const li = document.createElement('li');
    li.textContent = `${f.name}: waiting`;
    queue.append(li);
    return li;
  });
  let ok = 0;
  let records = 0;
  for (const [i, file] of files.entries()) {
    lines[i].textContent = `${file.name}: uploading`;
    const r = await uploadOne(file, classId, fieldId, field);
    lines[i].textContent = r.ok ? `${file.name}: ${r.records} record${r.records === 1 ? '' : 's'}` : `${file.name}: ${r.code}`;
    lines[i].className = r.ok ? 'done' : 'failed';
    if (r.ok) { ok += 1; records += r.records; }
  }
  if (files.length > 1) announce(`Done: ${ok} of ${files.length} archives uploaded, ${records} records created.`);
  $('again').hidden = false;
  updateStart();
}

/** The file's checksums, with the time it takes shown on the upload step. */
async function hashing(file, partSize) {
  return fileChecksums(file, partSize, (done) => {
    stepState('upload', `checking ${size(done)} of ${size(file.size)}`, 'active');
  });
}

/** One archive's upload to the end; `{ok, records}` or `{ok: false, code}`. */
async function uploadOne(file, classId, fieldId, field) {
  $('results').hidden = true;
  resetProgress();
  $('progress').hidden = false;
  announce(`Starting the upload of ${file.name}…`);
  let sock = null;
  try {
    let uploadId = null;
    let resumed = null;
    let sums = null;
    const saved = resumable(file, classId, fieldId);
    if (saved) {
      try {
        const partsPath = `/api/object-records/uploads/${saved.uploadId}/files/${saved.session}/parts/`;
        resumed = await api('GET', partsPath);
        if (resumed.state === 'pending' && (resumed.part_urls.length || resumed.presigned_url)) {
          // Fresh URLs bound to the checksums of this session's parts.
          sums = await hashing(file, resumed.is_multipart ? resumed.chunk_size : file.size);
          resumed = await api('POST', partsPath, { checksums: sums });
        }
        uploadId = saved.uploadId;
        announce(`Resuming the upload of ${file.name}: ${resumed.parts.length} part(s) already stored.`);
      } catch { forgetResume(); resumed = null; }
    }
    if (!uploadId) {
      ({ upload_id: uploadId } = await api('POST', '/api/object-records/uploads/', { object_class: classId, object_class_field: fieldId }));
    }
    const outcome = await new Promise((resolve, reject) => {
      const temp = `temp_${Date.now()}_${Math.random().toString(36).slice(2, 11)}`;
      let ready = null;
      const stored = new Map();
      let finished = false;
      let cancelling = false;
      const pause = { paused: false, resume: null };
      const finish = (fn, v) => { if (!finished) { finished = true; fn(v); } };
      const fatal = async (err) => {
        // A used upload refuses the socket: processing ended while we were away.
        if (err.code === 'ERR_INVALID_UUID' && ready && (ready.sent || stored.size === ready.pieces.length)) {
          try {
            const st = await api('GET', `/api/object-records/uploads/${uploadId}/`);
            if (st.state === 'succeeded') { finish(resolve, { uploadId, message: `Done Extracted ${st.record_count} files` }); return; }
            // Failed while we were away: the file's own code and text.
            const f = (st.files || []).find((x) => x.upload_id === ready.session && x.error_code);
            if (st.state === 'failed' && f) { failSteps(null); finish(reject, new ServerError(f.error_code, f.error_message)); return; }
          } catch { /* fall through */ }
        }
        finish(reject, err);
      };
      sock = new UploadSocket(uploadId, (msg) => {
        const m = msg.message || {};
        if (msg.type === 'presigned_url_ready' && m.temp_upload_id === temp && !ready) {
          sock.settle();
          ready = { session: m.upload_id, s3Key: m.s3_key, multipart: m.is_multipart, pieces: piecesOf(m, file.size) };
          saveResume({ uploadId, session: m.upload_id, name: file.name, size: file.size, lastModified: file.lastModified, classId, fieldId });
          armCancel();
          // Hash with the session's part size, then take URLs bound to the
          // checksums (the parts endpoint; the server keeps its part size).
          hashing(file, m.is_multipart ? m.chunk_size : file.size).then(async (s) => {
            sums = s;
            const info = await api('POST', `/api/object-records/uploads/${uploadId}/files/${m.upload_id}/parts/`, { checksums: sums });
            if (info.state === 'pending') ready.pieces = bindChecksums(resumedPieces(info, file.size), info, sums, file.size);
            if (!cancelling) sendBytes();
          }).catch((e) => fatal(e));
          return;
        }
        if (msg.type !== 'monitoring_update' && msg.type !== 'progress_update') return;
        if (!ready || (m.upload_id && m.upload_id !== ready.session)) return;
        showUpdate(msg.type, m);
        if (msg.type === 'monitoring_update' && m.status === 'success') finish(resolve, { uploadId, message: m.message });
        if (msg.type === 'monitoring_update' && m.status === 'error') finish(reject, new ServerError(m.error_code || 'ERR_PROCESSING_FAILED', m.message || 'Processing failed.'));
      }, fatal);

      function armCancel() {
        // Until completion is sent, the session can be cancelled: the PUTs stop
        // and the server aborts the multipart upload, so the store keeps no part.
        cancelUpload = async () => {
          cancelUpload = null;
          pauseUpload = null;
          cancelling = true;
          $('cancel').hidden = true;
          $('pause').hidden = true;
          if (pause.resume) pause.resume();
          for (const xhr of inflight) xhr.abort();
          try {
            await api('DELETE', `/api/object-records/uploads/${uploadId}/files/${ready.session}/`);
          } catch (e) { finish(reject, e); return; }
          finish(reject, new ServerError('ERR_CANCELLED', 'The upload was cancelled; nothing of it was kept.'));
        };
        $('cancel').hidden = false;
        // Pause stops the PUTs in flight (their parts are sent again on resume);
        // the parts stored stay stored.
        pauseUpload = () => {
          if (pause.paused) {
            pause.paused = false;
            $('pause').textContent = 'Pause';
            const go = pause.resume;
            pause.resume = null;
            if (go) go();
          } else {
            pause.paused = true;
            $('pause').textContent = 'Resume';
            for (const xhr of inflight) xhr.abort();
          }
        };
        $('pause').textContent = 'Pause';
        $('pause').hidden = false;
      }

      async function sendBytes() {
        const parts = ready.pieces.length;
        stepState('upload', `0 of ${size(file.size)} · ${parts} part${parts === 1 ? '' : 's'}`, 'active');
        stepCount('upload', 0, file.size);
        announce(`Uploading ${file.name}…`);
        for (;;) {
          try {
            const started = performance.now();
            const sentBefore = [...stored.keys()].reduce((a, n) => a + ready.pieces[n - 1].len, 0);
            await transfer(file, ready.pieces, stored, (n) => {
              stepCount('upload', n, file.size);
              $('t-upload').textContent = `${size(n)} of ${size(file.size)} · ${parts} part${parts === 1 ? '' : 's'}${speed(n - sentBefore, file.size - sentBefore, started)}`;
            }, () => pause.paused || cancelling);
            break;
          } catch (e) {
            // Cancel settles the upload itself once the server has aborted it.
            if (cancelling) return;
            if (pause.paused) {
              announce(`Paused: ${stored.size} of ${parts} part${parts === 1 ? '' : 's'} stored.`);
              await new Promise((r) => { pause.resume = r; });
              if (cancelling) return;
              announce(`Uploading ${file.name}…`);
              continue;
            }
            failSteps('upload'); finish(reject, e); return;
          }
        }
        if (finished) return;
        cancelUpload = null;
        pauseUpload = null;
        $('cancel').hidden = true;
        $('pause').hidden = true;
        stepState('upload', `${size(file.size)} stored`, 'done');
        announce('Upload stored; waiting for processing…');
        const completion = ready.multipart
          ? { type: 'complete_multipart_upload', upload_id: ready.session,
              parts: [...stored.entries()].sort((a, b) => a[0] - b[0]).map(([n, tag]) => ({ part_number: n, e_tag: tag })) }
          : { type: 'upload_complete', upload_id: ready.session, s3_key: ready.s3Key };
        // Sent again on any new connection; the server ignores a repeat.
        sock.request(completion);
      }

      if (resumed) {
        ready = { session: resumed.upload_id, s3Key: resumed.s3_key, multipart: resumed.is_multipart,
          pieces: bindChecksums(resumedPieces(resumed, file.size), resumed, sums, file.size), sent: resumed.state !== 'pending' };
        for (const p of resumed.parts) stored.set(p.part_number, p.e_tag);
        sock.open().then(() => {
          if (ready.sent) { stepState('upload', `${size(file.size)} stored`, 'done'); announce('Upload stored; waiting for processing…'); return; }
          armCancel();
          sendBytes();
        }, fatal);
      } else {
        sock.open().then(() => sock.request({
          type: 'request_presigned_url', temp_upload_id: temp, file_name: file.name, file_size: file.size,
          file_type: FILE_TYPE, object_class: classId, class_field: fieldId,
        }), (e) => finish(reject, e));
      }
    });
    sock.close();
    forgetResume();
    announce(`${outcome.message}. Loading the records…`);
    return { ok: true, records: await showRecords(outcome, file, field) };
  } catch (e) {
    if (sock) sock.close();
    const err = e instanceof ServerError ? e : new ServerError('ERR_CLIENT', String(e && e.message || e));
    failSteps(null);
    // A network failure keeps the session for a resume; any other outcome is final.
    if (err.code !== 'ERR_CONNECTION') forgetResume();
    if (err.code === 'ERR_CANCELLED') {
      $('failure').textContent = `Upload cancelled: ${err.detail}`;
      announce('Upload cancelled.');
    } else {
      $('failure').textContent = `Upload failed: ${err.code}: ${err.detail}`;
      announce('Upload failed.');
    }
    return { ok: false, code: err.code };
  } finally {
    cancelUpload = null;
    pauseUpload = null;
    $('cancel').hidden = true;
    $('pause').hidden = true;
  }
}

async function showRecords(outcome, file, field) {
  const status = await api('GET', `/api/object-records/uploads/${outcome.uploadId}/`);
  const ids = status.records || [];
  const shown = ids.slice(0, SHOWN_RECORDS);
  const records = new Array(shown.length);
  let next = 0;
  async function fetcher() {
    while (next < shown.length) {
      const i = next++;
      records[i] = await api('GET', `/api/object-records/${shown[i]}/`);
    }
  }
  await Promise.all(Array.from({ length: Math.min(6, shown.length) }, fetcher));
  const body = $('records');
  body.replaceChildren();
  for (const r of records) {
    const doc = (field && r[`field_${field.alias}`]) || {};
    const tr = document.createElement('tr');
    const cell = (text, cls) => { const td = document.createElement('td'); td.textContent = text; if (cls) td.className = cls; tr.append(td); return td; };
    cell(`#${r.id}`, 'num');
    cell(doc.path || r.object_name);
    cell(doc.size === undefined ? '' : size(doc.size), 'num');
    cell(doc.content_type || '');
    const td = cell('');
    if (doc.url) {
      const a = document.createElement('a');
      a.href = doc.url; a.rel = 'noopener';
      a.textContent = 'Download';
      a.setAttribute('aria-label', `Download ${doc.name || r.object_name}`);
      td.append(a);
    }
    body.append(tr);
  }
  const n = status.record_count ?? ids.length;
  $('results-summary').textContent = `${n} record${n === 1 ? '' : 's'} created from ${file.name} (upload ${outcome.uploadId}).`;
  $('results-more').hidden = ids.length <= shown.length;
  $('results-more').textContent = `The first ${shown.length} are listed. Download links expire after a few minutes; reload them from the records API.`;
  $('results').hidden = false;
  announce(`Done: ${n} record${n === 1 ? '' : 's'} created.`);
  $('results-title').focus();
  return n;
}

// ---- Wiring ------------------------------------------------------------------

function wire() {
  $('sign-in-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', signOut);
  $('class').addEventListener('change', loadFields);
  $('field').addEventListener('change', updateStart);
  $('file').addEventListener('change', () => chooseFile($('file').files));
  $('cancel').addEventListener('click', () => { if (cancelUpload) cancelUpload(); });
  $('pause').addEventListener('click', () => { if (pauseUpload) pauseUpload(); });
  $('upload-form').addEventListener('submit', startUpload);
  $('again').addEventListener('click', () => {
    $('progress').hidden = true; $('results').hidden = true; $('again').hidden = true;
    $('file').value = ''; chooseFile(null); $('file').focus();
  });
  const drop = $('drop');
  for (const type of ['dragenter', 'dragover']) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add('over'); });
  }
  for (const type of ['dragleave', 'drop']) {
    drop.addEventListener(type, () => drop.classList.remove('over'));
  }
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    const files = e.dataTransfer && e.dataTransfer.files;
    if (files && files.length) chooseFile(files);
  });
  if (session.access) enter().catch(() => signOut());
}

wire();
