'use strict';
// Chat reference server: a clients array and socket.write, as in every Node chat tutorial.
const { parseCli, serve } = require('./common');

const opts = parseCli('127.0.0.1:3000');
const clients = []; // connection order, which /who reports

// Same whitespace set as Rust's str::trim (Unicode White_Space): JS's \s differs by U+0085/U+FEFF.
const WS = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const TRIM = new RegExp(`^[${WS}]+|[${WS}]+$`, 'g');
const SPACE = new RegExp(`[${WS}]`);
const trim = (s) => s.replace(TRIM, '');
const NAME = /^[A-Za-z0-9_.-]{1,32}$/;

// socket.write() ignores its return value: Node queues without bound for a slow reader, so one
// stalled client grows this process's memory. Deliberate -- it's Node's default, and the
// benchmark shows it. The writableEnded check avoids write-after-end, which destroys the socket.
function send(client, line) {
  if (!client.socket.writableEnded) client.socket.write(`${line}\n`);
}
function broadcast(from, line) {
  for (const c of clients) if (c !== from) send(c, line);
}

serve('chat', opts.listen, (socket, label) => {
  const me = { socket, name: label };
  let pending = null; // bytes of an unfinished line
  let gone = false;

  clients.push(me);
  send(me, `* welcome ${me.name}, online now: ${clients.length}`);
  broadcast(me, `* ${me.name} joined, online now: ${clients.length}`);

  // Called on /quit, on an over-long line, on the peer's FIN and on close -- whichever is first.
  const leave = () => {
    if (gone) return;
    gone = true;
    clients.splice(clients.indexOf(me), 1);
    broadcast(me, `* ${me.name} left, online now: ${clients.length}`);
  };
  const hangUp = (line) => {
    send(me, line);
    socket.end();
    leave();
  };

  const command = (text) => {
    const sp = text.search(SPACE);
    const word = sp < 0 ? text.slice(1) : text.slice(1, sp);
    const arg = sp < 0 ? '' : trim(text.slice(sp));
    if (word === 'nick') {
      if (!NAME.test(arg)) return send(me, '* error: invalid name');
      if (clients.some((c) => c !== me && c.name === arg)) return send(me, `* error: name ${arg} is taken`);
      const old = me.name;
      me.name = arg;
      send(me, `* you are now ${arg}`);
      broadcast(me, `* ${old} is now ${arg}`);
    } else if (word === 'who') {
      send(me, `* online now: ${clients.length}: ${clients.map((c) => c.name).join(', ')}`);
    } else if (word === 'quit') {
      hangUp('* bye');
    } else {
      send(me, `* error: unknown command /${word}`);
    }
  };

  // Lines are split on bytes, then decoded one by one: a chunk may end inside a UTF-8 sequence,
  // and toString() replaces invalid UTF-8 with U+FFFD (lossy), as the contract asks.
  socket.on('data', (chunk) => {
    if (gone) return;
    const buf = pending ? Buffer.concat([pending, chunk]) : chunk;
    let start = 0;
    for (let nl; (nl = buf.indexOf(10, start)) !== -1; start = nl + 1) {
      const end = nl > start && buf[nl - 1] === 13 ? nl - 1 : nl;
      if (end - start > opts.maxLine) return hangUp(`* error: line too long (max ${opts.maxLine} bytes)`);
      const text = trim(buf.toString('utf8', start, end));
      if (text === '') continue;
      if (text[0] === '/') command(text);
      else {
        const line = `${me.name}: ${text}`;
        broadcast(me, line);
        if (opts.chatEchoSelf) send(me, line);
      }
      if (gone) return; // /quit
    }
    pending = start < buf.length ? buf.subarray(start) : null;
    // No newline yet: over the limit already? One byte of slack for the '\r' of a "\r\n".
    const n = pending ? pending.length : 0;
    if (n > opts.maxLine + 1 || (n === opts.maxLine + 1 && pending[n - 1] !== 13)) {
      hangUp(`* error: line too long (max ${opts.maxLine} bytes)`);
    }
  });
  socket.on('end', leave);
  socket.on('close', leave);
}, opts.maxConnections);
