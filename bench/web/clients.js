'use strict';
// Load for bench/web/run.py. Prints one JSON line when done.
//   node clients.js idle-ws N WEB          -- N idle WebSockets on /ws; prints "ready", exits on stdin EOF
//   node clients.js idle-sio N WEB         -- N idle socket.io clients (WebSocket transport); same
//   node clients.js fanout-sio N RATE SECONDS WEB
//       N socket.io receivers and one sender emitting `broadcast` RATE times a second for
//       SECONDS; reports deliveries and the delivery latency percentiles (ms).
const WebSocket = require('ws');
const { io } = require('socket.io-client');
const [mode, n, ...rest] = process.argv.slice(2);
const N = Number(n);

async function openAll(make) {
  const all = [];
  for (let i = 0; i < N; i += 1) {
    all.push(make(i));
    if (i % 100 === 99) await Promise.all(all.slice(-100));
  }
  return Promise.all(all);
}
const wsOpen = (url) => new Promise((resolve, reject) => {
  const ws = new WebSocket(url);
  ws.once('open', () => resolve(ws));
  ws.once('error', reject);
});
const sioOpen = (url) => new Promise((resolve, reject) => {
  const s = io(url, { transports: ['websocket'], forceNew: true, reconnection: false });
  s.once('connect', () => resolve(s));
  s.once('connect_error', reject);
});

async function idle(open) {
  await openAll(open);
  console.log('ready');
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
}

async function fanout(rate, seconds, web) {
  const lat = [];
  let deliveries = 0;
  const receivers = await openAll(() => sioOpen(`http://${web}`));
  for (const r of receivers) {
    r.on('broadcast', (m) => {
      deliveries += 1;
      lat.push(Number(process.hrtime.bigint() - BigInt(m.message.t)) / 1e6);
    });
  }
  const sender = await sioOpen(`http://${web}`);
  await new Promise((r) => setTimeout(r, 500));
  console.log('ready');
  const total = rate * seconds;
  let sent = 0;
  const started = Date.now();
  await new Promise((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((Date.now() - started) / 1000) * rate));
      while (sent < due) {
        sender.emit('broadcast', { message: { t: process.hrtime.bigint().toString() } });
        sent += 1;
      }
      if (sent >= total) resolve(); else setTimeout(tick, 5);
    };
    tick();
  });
  await new Promise((r) => setTimeout(r, 2000));
  lat.sort((a, b) => a - b);
  const p = (q) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] : null);
  console.log(JSON.stringify({ sent, deliveries, expected: sent * N, p50: p(0.5), p99: p(0.99), max: lat[lat.length - 1] }));
  process.exit(0);
}

if (mode === 'idle-ws') idle(() => wsOpen(`ws://${rest[0]}/ws`));
else if (mode === 'idle-sio') idle(() => sioOpen(`http://${rest[0]}`));
else fanout(Number(rest[0]), Number(rest[1]), rest[2]);
