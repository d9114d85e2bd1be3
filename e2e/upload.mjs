// The upload page end to end in headless Chromium: starts the built `intake serve`
// on free ports with a fresh data dir, creates a user with `intake admin
// create-user` and a class with a document field over REST, then, as a person
// would: signs in on the page, chooses the class and field, uploads a real ZIP,
// waits for success, checks the records listed (and a download link's bytes), and
// saves a screenshot. A second, larger archive goes up in parts (multipart, ETags
// read through CORS). Then, on that archive with the upload throttled in Chromium:
// non-ZIP files refused before sending, a refused archive's clean failed state,
// Cancel (the session aborted and failed), a reload mid-upload and the same file
// chosen again (the same upload, only the missing part sent), Pause/Resume, and
// several archives queued.
//
// Environment: INTAKE_BIN (default ../target/debug/intake, or $CARGO_TARGET_DIR's),
// CHROMIUM (default /usr/bin/chromium), SCREENSHOT (default ../docs/screenshot.png),
// INTAKE_TEST_CLAMD_ADDR (scan with that clamd when set).

import { chromium } from 'playwright-core';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const targetDir = process.env.CARGO_TARGET_DIR || path.join(root, 'target');
const BIN = process.env.INTAKE_BIN || path.join(targetDir, 'debug', 'intake');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT = process.env.SCREENSHOT || path.join(root, 'docs', 'screenshot.png');
const EMAIL = 'ada@example.com';
const PASSWORD = 'correct horse battery';
const MIB = 1024 * 1024;

function log(...args) { console.log('[e2e]', ...args); }

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// ---- A small ZIP writer (deflate or stored), so the test needs no zip tool. ----

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function zip(entries, { store = false } = {}) {
  const locals = [];
  const centrals = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const nameBuf = Buffer.from(name, 'utf8');
    const body = store ? data : zlib.deflateRawSync(data);
    const method = store ? 0 : 8;
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0800, 6); // UTF-8 names
    local.writeUInt16LE(method, 8);
    local.writeUInt16LE(0, 10);
    local.writeUInt16LE(0x21, 12); // 1980-01-01
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBuf.length, 26);
    local.writeUInt16LE(0, 28);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(0x0314, 4); // made by Unix, 2.0
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt16LE(method, 10);
    central.writeUInt16LE(0, 12);
    central.writeUInt16LE(0x21, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(body.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(nameBuf.length, 28);
    central.writeUInt32LE((0o100644 << 16) >>> 0, 38); // regular file, 0644
    central.writeUInt32LE(offset, 42);
    locals.push(local, nameBuf, body);
    centrals.push(central, nameBuf);
    offset += local.length + nameBuf.length + body.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

// ---- The server ------------------------------------------------------------------

async function startServer(dataDir) {
  const [httpPort, s3Port] = [await freePort(), await freePort()];
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('INTAKE_') && k !== 'INTAKE_TEST_CLAMD_ADDR') delete env[k];
  Object.assign(env, {
    INTAKE_DATA_DIR: dataDir,
    INTAKE_HTTP_ADDR: `127.0.0.1:${httpPort}`,
    INTAKE_S3_EMBEDDED_ADDR: `127.0.0.1:${s3Port}`,
    // Archives of 5 MiB and more go up in 5 MiB parts.
    INTAKE_MULTIPART_THRESHOLD_BYTES: String(5 * MIB),
    INTAKE_MULTIPART_CHUNK_BYTES: String(5 * MIB),
    INTAKE_LOG: 'warn,intake=info',
    NO_COLOR: '1',
  });
  if (process.env.INTAKE_TEST_CLAMD_ADDR) env.INTAKE_CLAMD_ADDR = process.env.INTAKE_TEST_CLAMD_ADDR;

  const created = execFileSync(BIN, ['admin', 'create-user', '--email', EMAIL, '--password', PASSWORD,
    '--account-type', 'config_admin'], { env, cwd: dataDir, encoding: 'utf8' });
  log('user', created.trim());

  const logs = [];
  const child = spawn(BIN, ['serve'], { env, cwd: dataDir, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d) => logs.push(d));
  child.stderr.on('data', (d) => logs.push(d));
  const base = `http://127.0.0.1:${httpPort}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`intake serve exited:\n${Buffer.concat(logs)}`);
    try { if ((await fetch(`${base}/readyz`)).ok) break; } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`intake serve did not become ready:\n${Buffer.concat(logs)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { base, child, logs };
}

async function rest(base, method, p, token, body) {
  const r = await fetch(`${base}${p}`, {
    method,
    headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `JWT ${token}` } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await r.json();
  if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${JSON.stringify(data)}`);
  return data;
}

// ---- The test ------------------------------------------------------------------------

function check(cond, what) { if (!cond) throw new Error(`check failed: ${what}`); }

async function main() {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'intake-e2e-'));
  const dataDir = path.join(work, 'data');
  const profile = path.join(work, 'chromium-profile');
  fs.mkdirSync(dataDir);
  let server = null;
  let context = null;
  try {
    check(fs.existsSync(BIN), `the intake binary at ${BIN} (cargo build --bin intake)`);
    server = await startServer(dataDir);
    log('intake serving at', server.base);

    const { access } = await rest(server.base, 'POST', '/api/auth/token/', null, { email: EMAIL, password: PASSWORD });
    await rest(server.base, 'POST', '/api/object-classes/', access, { name: 'Contracts' });
    const cls = await rest(server.base, 'POST', '/api/object-classes/', access, { name: 'Invoices', description: 'Scanned invoices' });
    await rest(server.base, 'POST', `/api/object-classes/${cls.id}/fields/`, access, { label: 'Supplier', alias: 'supplier', type: 'text' });
    await rest(server.base, 'POST', `/api/object-classes/${cls.id}/fields/`, access, { label: 'Scan', alias: 'scan', type: 'document' });

    const files = [
      ['2025/invoice-0001.txt', Buffer.from('Invoice 0001\nTotal: 120.00 EUR\n')],
      ['2025/invoice-0002.txt', Buffer.from('Invoice 0002\nTotal: 80.50 EUR\n')],
      ['summary.csv', Buffer.from('invoice,total\n0001,120.00\n0002,80.50\n')],
    ];
    const smallZip = path.join(work, 'invoices-2025.zip');
    fs.writeFileSync(smallZip, zip(files));

    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run'],
      viewport: { width: 1000, height: 900 },
    });
    const page = context.pages()[0] || await context.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    // The PUTs the store refuses on purpose (an altered part) are logged by Chromium.
    const refusedOnPurpose = new Set();
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      if (m.text().startsWith('Failed to load resource') && refusedOnPurpose.has(m.location().url)) return;
      problems.push(`console: ${m.text()} (${m.location().url})`);
    });

    await page.goto(server.base);
    // Every form control has a label.
    const unlabeled = await page.$$eval('input, select', (els) => els.filter((e) => !e.labels || e.labels.length === 0).map((e) => e.id));
    check(unlabeled.length === 0, `labels for ${unlabeled}`);

    await page.getByLabel('E-mail').fill(EMAIL);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText(`Signed in as ${EMAIL}`).waitFor();
    await page.getByLabel('Object class').selectOption({ label: 'Invoices' });
    await page.locator('#field option', { hasText: 'Scan (scan)' }).waitFor({ state: 'attached' });
    await page.getByLabel('Document field').selectOption({ label: 'Scan (scan)' });
    await page.getByLabel('ZIP archive', { exact: true }).setInputFiles(smallZip);
    await page.getByRole('button', { name: 'Upload', exact: true }).click();

    const outcome = await Promise.race([
      page.getByRole('status').filter({ hasText: 'Done: 3 records created.' }).waitFor({ timeout: 60_000 }).then(() => 'ok'),
      page.locator('#failure').filter({ hasText: 'Upload failed' }).waitFor({ timeout: 60_000 }).then(() => 'failed'),
    ]);
    if (outcome !== 'ok') throw new Error(await page.locator('#failure').textContent());
    log('small upload done');

    const rows = await page.$$eval('#records tr', (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
    check(rows.length === 3, `3 rows, got ${JSON.stringify(rows)}`);
    check(JSON.stringify(rows.map((r) => r[1])) === JSON.stringify(files.map((f) => f[0])), `file paths ${JSON.stringify(rows)}`);
    check(rows.every((r) => r[4] === 'Download'), 'a download link per record');
    for (const step of ['upload', 'saving_files', 'creating_records']) {
      const cls = await page.getAttribute(`#s-${step}`, 'class');
      check(cls && cls.includes('done'), `step ${step} shown done (${cls})`);
    }
    check((await page.textContent('#t-creating_records')).startsWith('3 of 3'), 'records step counts 3 of 3');
    const href = await page.getAttribute('#records tr:first-child a', 'href');
    const downloaded = Buffer.from(await (await fetch(href)).arrayBuffer());
    check(downloaded.equals(files[0][1]), 'the download link serves the file');
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    log('screenshot saved to', SCREENSHOT);

    // A larger archive: multipart, parts PUT in parallel from the browser.
    const big = Buffer.alloc(7 * MIB);
    for (let i = 0; i < big.length; i++) big[i] = (Math.imul(i, 2654435761) >>> 13) & 0xff;
    const bigZip = path.join(work, 'big.zip');
    fs.writeFileSync(bigZip, zip([['scan.bin', big], ['readme.txt', Buffer.from('two files')]], { store: true }));
    // Integrity: every PUT carries the CRC32C its URL was signed with; one bit of the
    // first part is flipped on its way, the store refuses it (400) and the page
    // sends it again.
    const bigPuts = [];
    let corrupted = 0;
    const corrupt = async (route, request) => {
      const body = request.method() === 'PUT' ? request.postDataBuffer() : null;
      if (!corrupted && body && body.length > MIB) {
        corrupted = 1;
        const bad = Buffer.from(body);
        bad[MIB] ^= 0x10;
        return route.continue({ postData: bad });
      }
      return route.continue();
    };
    const onPut = (r) => {
      if (r.request().method() === 'PUT') {
        bigPuts.push({ status: r.status(), crc: r.request().headers()['x-amz-checksum-crc32c'] });
        if (r.status() === 400) refusedOnPurpose.add(r.url());
      }
    };
    await page.route(() => true, corrupt);
    page.on('response', onPut);
    await page.getByRole('button', { name: 'Upload another archive' }).click();
    await page.getByLabel('ZIP archive', { exact: true }).setInputFiles(bigZip);
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    const second = await Promise.race([
      page.getByRole('status').filter({ hasText: 'Done: 2 records created.' }).waitFor({ timeout: 120_000 }).then(() => 'ok'),
      page.locator('#failure').filter({ hasText: 'Upload failed' }).waitFor({ timeout: 120_000 }).then(() => 'failed'),
    ]);
    if (second !== 'ok') throw new Error(await page.locator('#failure').textContent());
    check((await page.textContent('#t-upload')).includes('stored'), 'upload step done');
    const bigRows = await page.$$eval('#records tr', (trs) => trs.map((tr) => tr.cells[1].textContent));
    check(JSON.stringify(bigRows) === JSON.stringify(['scan.bin', 'readme.txt']), `multipart rows ${bigRows}`);
    await page.unroute(() => true, corrupt);
    page.off('response', onPut);
    check(corrupted === 1, 'a part was altered on its way');
    check(bigPuts.every((p) => /^[A-Za-z0-9+/]{6}==$/.test(p.crc || '')), `every PUT sends its CRC32C: ${JSON.stringify(bigPuts)}`);
    check(JSON.stringify(bigPuts.map((p) => p.status).sort()) === JSON.stringify([200, 200, 400]),
      `the altered part refused and sent again: ${JSON.stringify(bigPuts)}`);
    log('multipart upload done; the altered part was refused and sent again');

    // Not a ZIP: refused on the page before anything is sent.
    await page.getByRole('button', { name: 'Upload another archive' }).click();
    const notes = path.join(work, 'notes.txt');
    fs.writeFileSync(notes, 'just text');
    const fake = path.join(work, 'fake.zip');
    fs.writeFileSync(fake, 'just text, named like an archive');
    for (const [file, why] of [[notes, 'its name does not end in .zip'], [fake, 'its content does not start like one']]) {
      await page.getByLabel('ZIP archive', { exact: true }).setInputFiles(file);
      await page.locator('#choose-error').filter({ hasText: why }).waitFor({ timeout: 10_000 });
      check(await page.isDisabled('#start'), `no upload of ${path.basename(file)}`);
    }
    log('non-ZIP files refused before sending');

    // A refused archive: one failed step, none left active, the error said once.
    const evil = path.join(work, 'evil.zip');
    fs.writeFileSync(evil, zip([['../evil.txt', Buffer.from('x')]]));
    await page.getByLabel('ZIP archive', { exact: true }).setInputFiles(evil);
    await page.waitForFunction(() => !document.querySelector('#start').disabled);
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await page.locator('#failure').filter({ hasText: 'Upload failed: ERR_ARCHIVE_UNSAFE_PATH' }).waitFor({ timeout: 60_000 });
    const failure = await page.textContent('#failure');
    const detail = failure.replace('Upload failed: ERR_ARCHIVE_UNSAFE_PATH: ', '');
    const shown = await page.evaluate(() => document.querySelector('#progress').innerText);
    check(shown.split(detail).length - 1 === 1, `the error text once, got: ${shown}`);
    await page.screenshot({ path: SCREENSHOT.replace(/\.png$/, '-failed.png'), fullPage: true });
    check((await page.$$('.steps li.active')).length === 0, 'no step left active');
    check((await page.getAttribute('#s-extracting_file', 'class')).includes('failed'), 'the failed step marked');
    check((await page.getAttribute('#s-antivirus_scan', 'class') || '').includes('failed') === false, 'only one step failed');
    log('refused archive shows a clean failed state');

    // Cancel mid-upload (the network slowed down so that there is a "mid"): the
    // PUTs stop, the server aborts the multipart upload, the session fails.
    await page.getByRole('button', { name: 'Upload another archive' }).click();
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 512 * 1024,
    });
    const created = page.waitForResponse((r) => r.url().endsWith('/api/object-records/uploads/') && r.request().method() === 'POST');
    await page.getByLabel('ZIP archive', { exact: true }).setInputFiles(bigZip);
    await page.waitForFunction(() => !document.querySelector('#start').disabled);
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    const { upload_id: cancelledUpload } = await (await created).json();
    // Once a part is stored, the store holds it: a row of the embedded store's index
    // (<data>/s3/objects.db, table `parts`) and its file under <data>/s3 (a store with
    // another layout fails here, not silently below).
    const storedPut = await page.waitForResponse((r) => r.request().method() === 'PUT' && r.status() === 200, { timeout: 60_000 });
    const s3UploadId = new URL(storedPut.url()).searchParams.get('uploadId');
    const partFiles = () => execFileSync('sqlite3', ['-readonly', path.join(dataDir, 's3', 'objects.db'),
      `SELECT file FROM parts WHERE upload_id = '${s3UploadId.replace(/'/g, '')}'`], { encoding: 'utf8' })
      .split('\n').filter((f) => f && fs.existsSync(path.join(dataDir, 's3', f)));
    check(partFiles().length >= 1, `a stored part before cancelling: ${s3UploadId}`);
    await page.getByRole('button', { name: 'Cancel upload' }).click();
    await page.locator('#failure').filter({ hasText: 'Upload cancelled' }).waitFor({ timeout: 30_000 });
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    const after = await rest(server.base, 'GET', `/api/object-records/uploads/${cancelledUpload}/`, access);
    check(after.state === 'failed' && after.files.length === 1 && after.files[0].state === 'failed', `cancelled upload settled: ${JSON.stringify(after)}`);
    const parts = await rest(server.base, 'GET', `/api/object-records/uploads/${cancelledUpload}/files/${after.files[0].upload_id}/parts/`, access);
    check(parts.state === 'failed' && parts.parts.length === 0, `nothing to resume: ${JSON.stringify(parts)}`);
    check(partFiles().length === 0, `no part left in the store after cancel: ${partFiles()}`);
    check((await page.$$('.steps li.active')).length === 0, 'no step left active after cancel');
    check(await page.isHidden('#cancel'), 'no cancel button once cancelled');
    log('cancelled mid-upload');

    // Reload mid-upload, choose the same file again: the same upload goes on and
    // only the parts the store does not hold are sent.
    await page.getByRole('button', { name: 'Upload another archive' }).click();
    const posts = [];
    const puts = [];
    page.on('request', (r) => {
      if (r.method() === 'POST' && r.url().endsWith('/api/object-records/uploads/')) posts.push(r.url());
      if (r.method() === 'PUT') puts.push(r.url());
    });
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 512 * 1024,
    });
    const firstPart = page.waitForResponse((r) => r.request().method() === 'PUT' && r.status() === 200, { timeout: 60_000 });
    await page.getByLabel('ZIP archive', { exact: true }).setInputFiles(bigZip);
    await page.waitForFunction(() => !document.querySelector('#start').disabled);
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await firstPart;
    await page.reload();
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await page.getByText(`Signed in as ${EMAIL}`).waitFor();
    await page.getByLabel('Object class').selectOption({ label: 'Invoices' });
    await page.locator('#field option', { hasText: 'Scan (scan)' }).waitFor({ state: 'attached' });
    await page.getByLabel('Document field').selectOption({ label: 'Scan (scan)' });
    await page.getByLabel('ZIP archive', { exact: true }).setInputFiles(bigZip);
    await page.locator('#file-name').filter({ hasText: 'resumes the interrupted upload' }).waitFor({ timeout: 10_000 });
    const putsBefore = puts.length;
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    const resumedOutcome = await Promise.race([
      page.getByRole('status').filter({ hasText: 'Done: 2 records created.' }).waitFor({ timeout: 120_000 }).then(() => 'ok'),
      page.locator('#failure').filter({ hasText: 'Upload failed' }).waitFor({ timeout: 120_000 }).then(() => 'failed'),
    ]);
    if (resumedOutcome !== 'ok') throw new Error(await page.locator('#failure').textContent());
    check(posts.length === 1, `one upload created across the reload, got ${posts.length}`);
    check(puts.length - putsBefore === 1, `only the missing part sent after the reload, got ${puts.length - putsBefore}`);
    check(await page.evaluate(() => localStorage.getItem('intake.resume')) === null, 'resume state cleared when done');
    log('resumed after a reload');

    // Pause stops the PUTs (none starts while paused); Resume finishes the same upload.
    await page.getByRole('button', { name: 'Upload another archive' }).click();
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 512 * 1024,
    });
    const postsBefore = posts.length;
    await page.getByLabel('ZIP archive', { exact: true }).setInputFiles(bigZip);
    await page.waitForFunction(() => !document.querySelector('#start').disabled);
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await page.waitForFunction(() => document.querySelector('#p-upload').value > 0, null, { timeout: 30_000 });
    await page.getByRole('button', { name: 'Pause' }).click();
    await page.getByRole('status').filter({ hasText: 'Paused:' }).waitFor({ timeout: 10_000 });
    await page.screenshot({ path: SCREENSHOT.replace(/\.png$/, '-paused.png'), fullPage: true });
    const putsPaused = puts.length;
    await new Promise((r) => setTimeout(r, 1500));
    check(puts.length === putsPaused, 'no PUT starts while paused');
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await page.getByRole('button', { name: 'Resume' }).click();
    const pausedOutcome = await Promise.race([
      page.getByRole('status').filter({ hasText: 'Done: 2 records created.' }).waitFor({ timeout: 120_000 }).then(() => 'ok'),
      page.locator('#failure').filter({ hasText: 'Upload failed' }).waitFor({ timeout: 120_000 }).then(() => 'failed'),
    ]);
    if (pausedOutcome !== 'ok') throw new Error(await page.locator('#failure').textContent());
    check(posts.length - postsBefore === 1, 'the paused upload went on, no new one');
    log('paused and resumed');

    // Several archives at once: a queue, each its own upload, a total at the end;
    // a choice with a non-ZIP file among them is refused whole.
    await page.getByRole('button', { name: 'Upload another archive' }).click();
    const letters = path.join(work, 'letters.zip');
    fs.writeFileSync(letters, zip([['a.txt', Buffer.from('a')], ['b.txt', Buffer.from('b')]]));
    await page.getByLabel('ZIP archive', { exact: true }).setInputFiles([smallZip, notes]);
    await page.locator('#choose-error').filter({ hasText: 'notes.txt' }).waitFor({ timeout: 10_000 });
    check(await page.isDisabled('#start'), 'a choice with a non-ZIP file is refused');
    const postsQueue = posts.length;
    await page.getByLabel('ZIP archive', { exact: true }).setInputFiles([smallZip, letters]);
    await page.waitForFunction(() => !document.querySelector('#start').disabled);
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await page.getByRole('status').filter({ hasText: 'Done: 2 of 2 archives uploaded, 5 records created.' }).waitFor({ timeout: 120_000 });
    const queued = await page.$$eval('#queue li', (lis) => lis.map((li) => li.textContent));
    check(JSON.stringify(queued) === JSON.stringify(['invoices-2025.zip: 3 records', 'letters.zip: 2 records']), `queue ${queued}`);
    check(posts.length - postsQueue === 2, 'one upload per archive');
    log('several archives queued');

    check(problems.length === 0, `no page errors: ${problems.join('; ')}`);
    console.log('e2e: 1 passed, 0 failed');
  } catch (e) {
    if (server) console.error(`--- intake serve output ---\n${Buffer.concat(server.logs)}`);
    throw e;
  } finally {
    if (context) await context.close().catch(() => {});
    if (server) {
      server.child.kill('SIGTERM');
      await new Promise((r) => { if (server.child.exitCode !== null) r(); else server.child.on('exit', r); });
    }
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error('[e2e] FAILED:', e.stack || e); process.exit(1); });
