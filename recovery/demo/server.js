'use strict';
// Small HTTP app used by the tests and by `recovery demo`. It can be told to
// fail in the ways real Node.js apps fail under PM2: a blocked event loop
// (hang), requests that are never answered (stall), a crash, error statuses
// and slow answers. No npm dependencies, so it runs on any Node 18+.
const http = require('http');
const fs = require('fs');

const HOST = process.env.HOST || '127.0.0.1';
const PORT = Number(process.env.PORT);
if (!process.env.PORT || !Number.isInteger(PORT) || PORT < 0) {
  console.error('error: the PORT environment variable is required');
  process.exit(2);
}

// Marker files are checked at every start, so a PM2 restart sees them too:
// that is how a test makes an app that stays broken after a restart.
function marker(envName) {
  const file = process.env[envName];
  return Boolean(file) && fs.existsSync(file);
}

// Never returns: the CPU is pinned, no callback or signal handler ever runs,
// yet the process stays alive, so PM2 keeps reporting it as `online`.
function busyLoop() {
  for (;;) {}
}

if (marker('CRASH_ON_START_FILE')) {
  // stderr writes to pipes and files are synchronous, so this line gets out.
  process.stderr.write(`error: crash on start (${process.env.CRASH_ON_START_FILE} exists)\n`);
  process.exit(1);
}

let stalled = marker('STALL_ON_START_FILE');
let statusOverride = 200;
let delayMs = 0;
// CPU bursts: the event loop pinned for `burstMs` every `burstEvery` ms (a GC pause, a sync
// render, a cron job inside the app): slow for a moment, never down.
let burstTimer = null;
// A memory leak: every answered GET / keeps `leakMb` more; past `hangAtMb` of RSS the process
// thrashes like a heap near its limit (the loop blocks), so "memory grows until it hangs".
const leaked = [];
let leakMb = 0;
let hangAtMb = 0;
// GET / and /health answered, for GET /__count (bench/watch_bytes.py: probes made vs recorded).
let answered = 0;

function leak() {
  if (leakMb <= 0) return;
  leaked.push(Buffer.alloc(leakMb * 1048576, 1)); // filled, so the pages are resident
  if (hangAtMb > 0 && process.memoryUsage().rss >= hangAtMb * 1048576) setTimeout(busyLoop, 10);
}

function sendJson(res, status, body, extraHeaders) {
  res.writeHead(status, { 'Content-Type': 'application/json', ...extraHeaders });
  res.end(JSON.stringify(body));
}

// Control actions answer first and act ~50 ms later, so the caller gets its
// 200 before the app goes bad. `Connection: close` keeps clients from
// reusing a socket to a server that is about to stop answering.
const controls = {
  hang: () => busyLoop(),
  stall: () => { stalled = true; },
  crash: () => {
    process.stderr.write('error: crash requested via /__control/crash\n');
    process.exit(1);
  },
  // Logs `n` errors the way Node prints them: message, stack frames and a `{ code }` block.
  error: (q) => {
    const n = Math.max(1, Number(q.get('n')) || 1);
    for (let i = 0; i < n; i += 1) {
      const err = new Error(q.get('message') || `connect ECONNREFUSED 127.0.0.1:${5432 + i}`);
      err.code = q.get('code') || 'ECONNREFUSED';
      console.error(err);
    }
  },
  // The server stops listening but the process lives on, `online` in PM2: connections are refused.
  close: () => {
    console.log('closing the listener via /__control/close');
    server.close();
    setInterval(() => {}, 1 << 30); // with no server left, an idle Node process would exit
  },
  status: (q) => { statusOverride = Number(q.get('code')) || 500; },
  slow: (q) => { delayMs = Number(q.get('ms')) || 0; },
  // /__control/bursts?ms=900&every=5000 pins the CPU for `ms` every `every` ms; ms=0 stops.
  bursts: (q) => {
    const ms = Math.max(0, Number(q.get('ms')) || 0);
    const every = Math.max(ms + 1, Number(q.get('every')) || 5000);
    if (burstTimer) clearInterval(burstTimer);
    burstTimer = null;
    if (ms > 0) {
      burstTimer = setInterval(() => {
        const end = Date.now() + ms;
        while (Date.now() < end) { /* pinned */ }
      }, every);
    }
  },
  leak: (q) => {
    leakMb = Math.max(0, Number(q.get('mb')) || 0);
    hangAtMb = Math.max(0, Number(q.get('hang_at')) || 0);
  },
};

const server = http.createServer((req, res) => {
  if (stalled) return; // accepted, read, never answered: the loop stays idle
  const url = new URL(req.url, 'http://localhost');
  const path = url.pathname;

  if (path.startsWith('/__control/')) {
    const action = controls[path.slice('/__control/'.length)];
    if (!action) return sendJson(res, 404, { ok: false, error: 'unknown control' });
    // ?pid=N: only that worker of a cluster acts; another one answers `skipped`, so a caller can
    // repeat the call until PM2's round robin hands it to the worker it means.
    const only = Number(url.searchParams.get('pid'));
    if (only && only !== process.pid) {
      return sendJson(res, 200, { ok: true, control: path, pid: process.pid, skipped: true }, { Connection: 'close' });
    }
    sendJson(res, 200, { ok: true, control: path, pid: process.pid }, { Connection: 'close' });
    setTimeout(() => action(url.searchParams), 50);
    return;
  }
  if (path === '/__count') return sendJson(res, 200, { answered, pid: process.pid });
  if (path === '/slow') {
    const ms = Number(url.searchParams.get('ms')) || 0;
    setTimeout(() => sendJson(res, 200, { ok: true, pid: process.pid, slept: ms }), ms);
    return;
  }
  if (path === '/' || path === '/health') {
    const answer = () => {
      answered += 1;
      sendJson(res, statusOverride, { ok: statusOverride < 400, pid: process.pid, uptime: process.uptime() });
      leak();
    };
    if (delayMs > 0) setTimeout(answer, delayMs);
    else answer();
    return;
  }
  sendJson(res, 404, { ok: false, error: 'not found' });
});

server.listen(PORT, HOST, () => {
  console.log(`listening on ${HOST}:${PORT} pid ${process.pid}`);
  if (marker('HANG_ON_START_FILE')) busyLoop();
});

// Shut down cleanly like a real (Next.js) app. A busy-looping process never
// runs this handler, so PM2 must fall back to SIGKILL after kill_timeout.
function shutdown(signal) {
  console.log(`${signal} received, closing server`);
  server.close(() => process.exit(0));
  // Stalled requests would keep close() waiting (closeAllConnections: Node 18.2+).
  if (server.closeAllConnections) server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));
