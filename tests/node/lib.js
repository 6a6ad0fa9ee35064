'use strict';
// Helpers shared by the client checks: ADDR parsing, connecting, a hard deadline, a line reader.
const assert = require('assert');
const net = require('net');

let stage = 'start';
let finished = false;
// Names what we are waiting for, so a timeout or failure says where it happened.
const step = (what) => { stage = what; };

function fail(err) {
  finished = true;
  console.error(`FAIL at "${stage}": ${err && err.stack ? err.stack : err}`);
  process.exit(1);
}

// Runs fn() under a hard deadline; prints its summary object as one JSON line on success.
function main(fn, timeoutMs = 10000) {
  setTimeout(() => fail(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs).unref();
  process.on('uncaughtException', fail); // asserts inside 'data' handlers land here
  // If every handle closes while we still await something, Node just exits: make that a failure.
  process.on('exit', (code) => {
    if (!finished) {
      console.error(`FAIL at "${stage}": event loop drained before the check finished`);
      process.exitCode = 1;
    }
  });
  fn().then((summary) => {
    finished = true;
    console.log(JSON.stringify(summary));
    process.exit(0);
  }, fail);
}

// The contract's ADDR forms: HOST:PORT, PORT (= 127.0.0.1:PORT), [V6]:PORT, unix:PATH.
function parseAddr(s) {
  if (s && s.startsWith('unix:') && s.length > 5) return { path: s.slice(5) };
  const m = /^(\d+)$/.exec(s) || /^\[([^\]]+)\]:(\d+)$/.exec(s) || /^([^:[\]]+):(\d+)$/.exec(s);
  if (!m) throw new Error(`bad or missing address ${JSON.stringify(s)}`);
  return m.length === 2 ? { host: '127.0.0.1', port: Number(m[1]) } : { host: m[1], port: Number(m[2]) };
}

// Connects; `sock.whenClosed` resolves with hadError on 'close' (listened for from the start).
function connect(opts) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(opts);
    sock.whenClosed = new Promise((r) => sock.once('close', r));
    sock.once('error', reject);
    sock.once('connect', () => {
      sock.removeListener('error', reject);
      sock.on('error', fail);
      resolve(sock);
    });
  });
}

// How the server labels this connection: "127.0.0.1:PORT", "[::1]:PORT"; null over Unix sockets,
// where the server numbers peers and the caller must learn the label from the server.
function labelOf(sock) {
  if (!sock.localAddress) return null;
  return net.isIPv6(sock.localAddress) ? `[${sock.localAddress}]:${sock.localPort}` : `${sock.localAddress}:${sock.localPort}`;
}

// "\n"-terminated lines from a socket, however the bytes were split or coalesced. next()
// resolves with the next line, or null at the server's FIN.
class Lines {
  constructor(sock, name) {
    this.name = name;
    this.queue = [];
    this.waiters = [];
    this.partial = '';
    this.eof = false;
    sock.setEncoding('utf8'); // decodes UTF-8 sequences split across reads correctly
    sock.on('data', (text) => {
      const parts = (this.partial + text).split('\n');
      this.partial = parts.pop();
      for (const line of parts) this.deliver(line);
    });
    sock.on('end', () => {
      this.eof = true;
      while (this.waiters.length) this.waiters.shift()(null);
    });
  }

  deliver(line) {
    if (this.waiters.length) this.waiters.shift()(line);
    else this.queue.push(line);
  }

  next() {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.eof) return Promise.resolve(null);
    return new Promise((r) => this.waiters.push(r));
  }

  // The next line must be exactly `want`: anything unexpected in between is a failure too.
  async expect(want) {
    step(`${this.name} waits for ${JSON.stringify(want)}`);
    assert.strictEqual(await this.next(), want, `${this.name}: unexpected line`);
  }

  // The server must close now: no further lines, no half line left over.
  async expectEnd() {
    step(`${this.name} waits for the server to close`);
    assert.strictEqual(await this.next(), null, `${this.name}: expected the server's FIN`);
    assert.strictEqual(this.partial, '', `${this.name}: unterminated line before FIN`);
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

module.exports = { main, step, parseAddr, connect, labelOf, Lines, sleep };
