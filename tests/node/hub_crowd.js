'use strict';
// hub_crowd.js ADDR --clients N [--name-bytes B] [--rooms R] [--listers L] [--lists K]
//                   [--list-request JSON] [--pid PID]
// A crowd on a hub, the way a Node program would build one: N clients connect, each registers a
// B-byte name and joins R rooms of 64-byte names (one write of back-to-back JSON), then L of them
// send K list requests each. Reports, as one JSON line: what the registrations cost (bytes and
// presence lines the crowd received, the server's CPU), and what the lists cost (reply bytes,
// the server's CPU and RSS growth). With --pid the server's CPU and RSS come from /proc.
const fs = require('fs');
const { main, step, parseAddr, connect } = require('./lib');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
}

// Server CPU seconds (user + system) and RSS bytes, from /proc; null without --pid.
function usage(pid) {
  if (!pid) return null;
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;
  return { cpu: ticks / 100, rss };
}

const pad = (s, n) => (s + 'x'.repeat(n)).slice(0, n);

main(async () => {
  const addr = parseAddr(process.argv[2]);
  const clients = Number(arg('--clients', '100'));
  const nameBytes = Number(arg('--name-bytes', '16'));
  const rooms = Number(arg('--rooms', '0'));
  const listers = Number(arg('--listers', '0'));
  const lists = Number(arg('--lists', '1'));
  const listRequest = arg('--list-request', '{"type":"list"}');
  const pid = Number(arg('--pid', '0'));
  const roomNames = Array.from({ length: rooms }, (_, i) => pad(`room-${i}-`, 64));

  // Per client: bytes and lines received, split by kind, and the replies it waits for.
  const crowd = [];
  const totals = { closed: 0, bytes: 0, online: 0, presence: 0, offline: 0, listBytes: 0, listReplies: 0, errors: 0 };
  const before = usage(pid);
  const t0 = Date.now();
  step('connect and register');
  for (let i = 0; i < clients; i++) {
    const sock = await connect(addr);
    const c = { sock, rest: '', pending: 1 + rooms, lists: 0, waiters: [] };
    sock.setEncoding('utf8');
    sock.on('data', (chunk) => {
      totals.bytes += Buffer.byteLength(chunk);
      const text = c.rest + chunk;
      const lines = text.split('\n');
      c.rest = lines.pop();
      for (const line of lines) {
        if (line.startsWith('{"type":"online"')) totals.online++;
        else if (line.startsWith('{"type":"presence"')) totals.presence++;
        else if (line.startsWith('{"type":"offline"')) totals.offline++;
        else if (line.startsWith('{"type":"list"')) {
          totals.listBytes += Buffer.byteLength(line) + 1;
          totals.listReplies++;
          c.lists--;
        } else if (line.startsWith('{"type":"error"')) {
          totals.errors++;
          c.pending--;
        } else if (line.startsWith('{"type":"synced"') || line.startsWith('{"type":"joined"')) c.pending--;
      }
      while (c.waiters.length && c.waiters[0].done()) c.waiters.shift().resolve();
    });
    // A client the server cut (its output limit) waits for nothing more, and is counted.
    sock.on('close', () => {
      c.closed = true;
      totals.closed++;
      for (const w of c.waiters.splice(0)) w.resolve();
    });
    c.until = (done) =>
      done() || c.closed ? Promise.resolve() : new Promise((resolve) => c.waiters.push({ done, resolve }));
    const frames = [JSON.stringify({ type: 'sync', clientName: pad(`c-${i}-`, nameBytes) })];
    for (const room of roomNames) frames.push(JSON.stringify({ type: 'join', room }));
    sock.write(frames.join(''));
    crowd.push(c);
  }
  await Promise.all(crowd.map((c) => c.until(() => c.pending <= 0)));
  // Presence notices may trail the replies: wait until the crowd has heard nothing for a while.
  step('wait for the notices to settle');
  for (let last = -1; last !== totals.bytes; ) {
    last = totals.bytes;
    await new Promise((r) => setTimeout(r, 1000));
  }
  const registered = usage(pid);
  console.error(`registered ${clients} clients in ${(Date.now() - t0) / 1000} s`);
  const registration = {
    seconds: (Date.now() - t0 - 1000) / 1000,
    bytesReceived: totals.bytes,
    onlineLines: totals.online,
    presenceLines: totals.presence,
    serverCpuSeconds: registered && +(registered.cpu - before.cpu).toFixed(2),
  };

  step('lists');
  const t1 = Date.now();
  const askers = crowd.slice(0, listers);
  // Each asks, waits for the reply, asks again: a client reading its replies.
  await Promise.all(
    askers.map(async (c) => {
      for (let k = 0; k < lists && !c.closed; k++) {
        c.lists = 1;
        c.sock.write(listRequest);
        await c.until(() => c.lists <= 0);
      }
    }),
  );
  const listed = usage(pid);
  const listing = {
    requests: listers * lists,
    seconds: (Date.now() - t1) / 1000,
    replyBytes: totals.listReplies ? Math.round(totals.listBytes / totals.listReplies) : 0,
    serverCpuSeconds: listed && +(listed.cpu - registered.cpu).toFixed(2),
    serverRssGrowthMiB: listed && +((listed.rss - registered.rss) / 1048576).toFixed(1),
  };
  const closedByServer = totals.closed;
  for (const c of crowd) c.sock.destroy();
  return { clients, errors: totals.errors, closedByServer, registration, listing };
}, Number(arg('--timeout', '600')) * 1000);
