'use strict';
// JSON hub reference server: a Map of clients, JSON.parse in, JSON.stringify + "\n" out.
const { isUtf8 } = require('buffer');
const debug = require('util').debuglog('hub'); // NODE_DEBUG=hub shows the "info" log lines
const { parseCli, serve } = require('./common');

const opts = parseCli('127.0.0.1:9000');
const clients = []; // connection order, which "list" reports
const names = new Map(); // clientName -> client

const [LF, CR, TAB, SP, QUOTE, BSLASH] = [10, 13, 9, 32, 34, 92];
const [LBRACE, RBRACE, LBRACK, RBRACK] = [123, 125, 91, 93];
const NEST = 1;
const STRING = 2;
const BARE = 3;
const isSpace = (b) => b === SP || b === LF || b === CR || b === TAB;

// Cuts a byte stream into frames: objects back to back ({..}{..}), whitespace between, reads
// split anywhere. Counts braces/brackets outside strings. A raw newline inside an unfinished
// value ends it as bad_json (frames are compact JSON). Scalars and junk run to whitespace or the
// next opener, so any byte soup yields errors rather than a parser stuck waiting.
class FrameSplitter {
  constructor(max) {
    this.max = max;
    this.buf = null; // unfinished frame, starting at buf[0]
    this.scan = 0; // where to resume scanning in buf
    this.start = -1; // frame start in the current buffer, -1 between frames
  }

  // emit(kind, bytes) with kind 'frame' | 'bad_json' | 'too_large'; a false return stops us.
  push(chunk, emit) {
    const buf = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    let i = this.scan;
    for (; i < buf.length; i++) {
      const b = buf[i];
      if (this.start < 0) {
        if (isSpace(b)) continue;
        this.start = i;
        this.kind = b === LBRACE || b === LBRACK ? NEST : b === QUOTE ? STRING : BARE;
        this.depth = this.kind === NEST ? 1 : 0;
        this.inString = this.kind === STRING;
        this.escaped = false;
        continue;
      }
      if (b === LF || (this.kind === BARE && (isSpace(b) || b === LBRACE || b === LBRACK || b === QUOTE))) {
        const kind = this.kind === BARE ? 'frame' : 'bad_json';
        const ok = emit(kind, buf.subarray(this.start, i));
        this.start = -1;
        if (!ok) return;
        if (b !== LF) i--; // that opener starts the next frame
        continue;
      }
      if (i - this.start + 1 > this.max) return void emit('too_large');
      let done = false;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (b === BSLASH) this.escaped = true;
        else if (b === QUOTE) {
          this.inString = false;
          done = this.depth === 0; // a top-level "string" frame ends here
        }
      } else if (b === QUOTE) this.inString = true;
      else if (b === LBRACE || b === LBRACK) this.depth++;
      else if (b === RBRACE || b === RBRACK) done = --this.depth === 0;
      if (done) {
        const ok = emit('frame', buf.subarray(this.start, i + 1));
        this.start = -1;
        if (!ok) return;
      }
    }
    if (this.start < 0) {
      this.buf = null;
      this.scan = 0;
    } else { // keep just the unfinished frame
      this.buf = buf.subarray(this.start);
      this.scan = i - this.start;
      this.start = 0;
    }
  }
}

// socket.write() ignores its return value: Node queues without bound for a slow reader, so one
// stalled client grows this process's memory. Deliberate -- it's Node's default, and the
// benchmark shows it. The writableEnded check avoids write-after-end, which destroys the socket.
function send(client, msg) {
  if (!client.socket.writableEnded) client.socket.write(`${JSON.stringify(msg)}\n`);
}
function broadcast(from, msg, filter = () => true) {
  const line = `${JSON.stringify(msg)}\n`; // stringify once, not once per client
  for (const c of clients) if (c !== from && c.authed && filter(c) && !c.socket.writableEnded) c.socket.write(line);
}
const error = (client, code, reason) => send(client, { type: 'error', code, reason });
const has = (obj, key) => Object.prototype.hasOwnProperty.call(obj, key);
const shortString = (v) => typeof v === 'string' && v !== '' && Buffer.byteLength(v) <= 64;
// Rooms sort by UTF-8 bytes, as Rust's String ordering does; JS's default sort uses UTF-16 units.
const byBytes = (a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b));

function handle(me, msg) {
  const from = me.name ?? me.sid;
  switch (msg.type) {
    case 'sync': {
      const name = msg.clientName;
      if (!shortString(name)) return error(me, 'bad_message', 'clientName must be a non-empty string of at most 64 bytes');
      const holder = names.get(name);
      if (holder && holder !== me) return error(me, 'name_taken', `name ${name} is taken`);
      const previous = me.name;
      if (previous !== null) names.delete(previous);
      me.name = name;
      names.set(name, me);
      send(me, { type: 'synced', clientName: name, sessionId: me.sid });
      const online = { type: 'online', clientName: name, sessionId: me.sid };
      if (previous !== null && previous !== name) online.previous = previous;
      return broadcast(me, online);
    }
    case 'info': {
      if (!has(msg, 'message')) return error(me, 'bad_message', 'info needs a message');
      if (!has(msg, 'to')) return debug('info from %s: %j', from, msg.message);
      if (typeof msg.to !== 'string') return error(me, 'bad_message', 'to must be a string');
      const dest = names.get(msg.to);
      if (!dest) return error(me, 'no_such_client', `no client named ${msg.to}`);
      return send(dest, { type: 'info', from, message: msg.message });
    }
    case 'broadcast': {
      if (!has(msg, 'message')) return error(me, 'bad_message', 'broadcast needs a message');
      if (!has(msg, 'room')) return broadcast(me, { type: 'broadcast', from, message: msg.message });
      if (!shortString(msg.room)) return error(me, 'bad_message', 'room must be a non-empty string of at most 64 bytes');
      const out = { type: 'broadcast', from, room: msg.room, message: msg.message };
      return broadcast(me, out, (c) => c.rooms.has(msg.room));
    }
    case 'join':
    case 'leave': {
      if (!shortString(msg.room)) return error(me, 'bad_message', 'room must be a non-empty string of at most 64 bytes');
      if (msg.type === 'join') me.rooms.add(msg.room);
      else me.rooms.delete(msg.room);
      return send(me, { type: msg.type === 'join' ? 'joined' : 'left', room: msg.room });
    }
    case 'list': {
      const live = clients.filter((c) => c.authed);
      return send(me, {
        type: 'list',
        count: live.length,
        clients: live.map((c) => ({ clientName: c.name, sessionId: c.sid, rooms: [...c.rooms].sort(byBytes) })),
      });
    }
    default:
      return error(me, 'unknown_type', `unknown message type ${msg.type}`);
  }
}

const KNOWN_TYPES = new Set(['sync', 'info', 'broadcast', 'join', 'leave', 'list']);

serve('hub', opts.listen, (socket, sid) => {
  // Until a token-carrying sync arrives (--hub-token), a connection is invisible to others.
  const me = { socket, sid, name: null, rooms: new Set(), authed: opts.hubToken === null };
  const splitter = new FrameSplitter(opts.maxFrame);
  let gone = false;
  clients.push(me);
  // Against slowloris: a connection that makes no valid request in time is hung up on.
  let useful = false;
  const deadline = opts.registerTimeoutMs > 0
    ? setTimeout(() => {
      if (!useful && !gone) hangUp('register_timeout', 'no valid request within the registration timeout');
    }, opts.registerTimeoutMs).unref()
    : null;

  const leave = () => {
    if (gone) return;
    gone = true;
    if (deadline) clearTimeout(deadline);
    clients.splice(clients.indexOf(me), 1);
    if (me.name !== null) {
      names.delete(me.name);
      broadcast(me, { type: 'offline', clientName: me.name, sessionId: me.sid });
    }
  };
  const hangUp = (code, reason) => {
    error(me, code, reason);
    socket.end();
    leave();
    return false;
  };

  const onFrame = (kind, bytes) => {
    if (kind === 'too_large') return hangUp('frame_too_large', `frame over ${opts.maxFrame} bytes`);
    let msg; // stays undefined when the frame is not JSON (JSON.parse never returns undefined)
    if (kind === 'frame' && isUtf8(bytes)) try { msg = JSON.parse(bytes.toString()); } catch {}
    const isObject = msg !== null && typeof msg === 'object' && !Array.isArray(msg);
    if (!me.authed) {
      if (!isObject || msg.type !== 'sync' || msg.token !== opts.hubToken) {
        return hangUp('unauthorized', 'the first frame must be a sync carrying the token');
      }
      me.authed = true;
    }
    if (msg === undefined) error(me, 'bad_json', 'frame is not valid JSON');
    else if (!isObject || typeof msg.type !== 'string') error(me, 'bad_message', 'expected an object with a string "type"');
    else {
      if (KNOWN_TYPES.has(msg.type)) useful = true;
      handle(me, msg);
    }
    return true;
  };

  socket.on('data', (chunk) => {
    if (!gone) splitter.push(chunk, onFrame);
  });
  socket.on('end', leave);
  socket.on('close', leave);
}, opts.maxConnections);
