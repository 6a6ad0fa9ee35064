'use strict';
// Headless Chromium (Debian's /usr/bin/chromium, driven by the pinned playwright-core) against
// a netloop it starts itself:
//  1. chat: two pages on netloop's chat page and one TCP hub member (`netloop connect
//     --hub-name carl`) see each other's presence and exchange messages; a screenshot of the
//     chat page is saved;
//  2. cross-origin: a page served by this script from another origin loads the official
//     socket.io client (the npm package's dist bundle) and talks to netloop's /socket.io/,
//     allowed by --web-origin; the same page from an origin not on the list is refused.
// Usage: node browser.js NETLOOP_BINARY SCREENSHOT_PATH
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');
const { main, step } = require('./lib');
const { need } = require('./deps');
const { chromium } = need('playwright-core');

const [netloopBin, screenshot] = process.argv.slice(2);
const CHROMIUM = '/usr/bin/chromium';
if (!fs.existsSync(CHROMIUM)) {
  console.error('FAIL: Chromium is not installed; run: apt-get install -y chromium (scripts/test does this)');
  process.exit(2);
}
const children = [];
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));

// Starts a process; resolves lines of its stdout through `lines.next(pred)`.
function start(cmd, args) {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  const seen = [];
  const waiters = [];
  let partial = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (text) => {
    const parts = (partial + text).split('\n');
    partial = parts.pop();
    for (const line of parts) {
      seen.push(line);
      for (const w of waiters.splice(0)) if (!w(line)) waiters.push(w);
    }
  });
  child.next = (what, pred) => {
    step(`${cmd} ${args[0]}: waiting for ${what}`);
    const found = seen.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve) => waiters.push((line) => (pred(line) ? (resolve(line), true) : false)));
  };
  return child;
}

// A static server for the cross-origin page and the socket.io client bundle.
// The page finds netloop's address in its query string (?web=HOST:PORT).
function pageServer() {
  const bundle = path.join(__dirname, 'node_modules', 'socket.io-client', 'dist', 'socket.io.min.js');
  const page = `<!doctype html><meta charset="utf-8"><title>elsewhere</title>
<script src="/socket.io.min.js"></script>
<script>
  window.result = new Promise((resolve) => {
    const web = new URLSearchParams(location.search).get('web');
    const socket = io('http://' + web, { reconnection: false });
    socket.on('connect_error', (e) => resolve({ error: e.message }));
    socket.on('synced', (m) => socket.emit('list'));
    socket.on('list', (m) => resolve({ transport: socket.io.engine.transport.name, names: m.clients.map((c) => c.clientName) }));
    socket.on('connect', () => socket.emit('sync', { clientName: 'far-away' }));
  });
</script>`;
  const server = http.createServer((req, res) => {
    if (req.url === '/socket.io.min.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript' });
      fs.createReadStream(bundle).pipe(res);
    } else {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(page);
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

main(async () => {
  step('static server for the other origin');
  const statics = await pageServer();
  const port = statics.address().port;
  step('netloop starts');
  const netloop = start(netloopBin, ['serve', '--hub', '127.0.0.1:0', '--web', '127.0.0.1:0', '--web-origin', `http://127.0.0.1:${port}`]);
  const hub = (await netloop.next('hub listening', (l) => l.startsWith('hub listening on '))).split(' ').pop();
  const web = (await netloop.next('web listening', (l) => l.startsWith('web listening on '))).split(' ').pop();

  step('chromium starts');
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'netloop-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1000, height: 620 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    const join = async (name) => {
      const page = await context.newPage();
      page.on('console', (m) => console.error(`[${name} console] ${m.text()}`));
      page.on('pageerror', (e) => console.error(`[${name} page error] ${e}`));
      await page.goto(`http://${web}/`);
      await page.fill('#name', name);
      await page.click('#name-button');
      await page.waitForFunction((n) => document.getElementById('status').textContent === `online as ${n}`, name);
      return page;
    };
    step('alice and bob open the chat page');
    const alice = await join('alice');
    const bob = await join('bob');
    step('carl joins over TCP');
    const carl = start(netloopBin, ['connect', hub, '--hub-name', 'carl']);
    await carl.next('synced', (l) => l.startsWith('[synced as carl'));
    const online = (page, names) => page.waitForFunction((want) => {
      const got = [...document.querySelectorAll('#people li')].map((li) => li.dataset.name);
      return want.every((n) => got.includes(n));
    }, names);
    const inLog = (page, text) => page.waitForFunction((t) => document.getElementById('log').textContent.includes(t), text);
    step('presence: each page sees the three of them');
    await online(alice, ['alice', 'bob', 'carl']);
    await online(bob, ['alice', 'bob', 'carl']);

    step('alice says hello: bob and carl hear it');
    await alice.fill('#message', 'hello from alice');
    await alice.click('#send');
    await inLog(bob, 'alice: hello from alice');
    await carl.next('alice broadcast', (l) => l === '[broadcast from alice] hello from alice');
    step('carl answers from the terminal: both pages show it');
    carl.stdin.write('hi from carl\n');
    await inLog(alice, 'carl: hi from carl');
    await inLog(bob, 'carl: hi from carl');
    step('bob whispers to alice');
    await bob.selectOption('#target', '@alice');
    await bob.fill('#message', 'just for you');
    await bob.click('#send');
    await inLog(alice, 'bob: just for you');
    step('alice joins a room');
    await alice.fill('#room', 'ops');
    await alice.click('#join-button');
    await inLog(alice, 'joined #ops');
    if (screenshot) await alice.screenshot({ path: screenshot });

    step('bob leaves: alice and carl see it');
    await bob.close();
    await inLog(alice, 'bob left');
    await carl.next('bob offline', (l) => l.startsWith('[offline bob'));

    step('a page from an allowed origin uses the official socket.io client');
    const far = await context.newPage();
    far.on('console', (m) => console.error(`[far console] ${m.text()}`));
    await far.goto(`http://127.0.0.1:${port}/?web=${web}`);
    const result = await far.evaluate(() => window.result);
    if (result.error || !result.names.includes('far-away') || !result.names.includes('alice')) {
      throw new Error(`cross-origin socket.io: ${JSON.stringify(result)}`);
    }
    await carl.next('far-away online', (l) => l.startsWith('[online far-away'));
    step('the same page from an origin not on the list is refused');
    const refused = await context.newPage();
    await refused.goto(`http://localhost:${port}/?web=${web}`);
    const denied = await refused.evaluate(() => window.result);
    if (!denied.error) throw new Error(`a disallowed origin got in: ${JSON.stringify(denied)}`);
    carl.stdin.end();
    statics.close();
    return { crossOrigin: result.transport, denied: denied.error };
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}, 60000);
