'use strict';
// echo_check.js ADDR [--bytes N] [--chunk K] [--banner TEXT]
// Streams N pseudo-random bytes to an echo server with backpressure, checks every byte comes
// back in order, and that the server closes cleanly after our FIN.
const assert = require('assert');
const { once } = require('events');
const { main, step, parseAddr, connect } = require('./lib');

// Deterministic byte stream (32-bit LCG, top byte); both directions run their own copy.
class Pattern {
  constructor() { this.x = 0x2545f491; }
  next(n) {
    const out = Buffer.allocUnsafe(n);
    let x = this.x;
    for (let i = 0; i < n; i++) {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      out[i] = x >>> 24;
    }
    this.x = x;
    return out;
  }
}

function parseArgs(argv) {
  const o = { addr: argv[0], bytes: 4 * 1024 * 1024, chunk: 64 * 1024, banner: null };
  for (let i = 1; i < argv.length; i++) {
    const v = argv[++i];
    if (v === undefined) throw new Error(`${argv[i - 1]} needs a value`);
    if (argv[i - 1] === '--bytes') o.bytes = Number(v);
    else if (argv[i - 1] === '--chunk') o.chunk = Number(v);
    else if (argv[i - 1] === '--banner') o.banner = Buffer.from(v); // exact bytes, newline included if wanted
    else throw new Error(`unknown argument ${argv[i - 1]}`);
  }
  assert(Number.isSafeInteger(o.bytes) && o.bytes >= 0, '--bytes wants an integer >= 0');
  assert(Number.isSafeInteger(o.chunk) && o.chunk > 0, '--chunk wants an integer > 0');
  return o;
}

main(async () => {
  const o = parseArgs(process.argv.slice(2));
  step('connect');
  const sock = await connect(parseAddr(o.addr));
  const expected = new Pattern();
  let banner = o.banner ? Buffer.alloc(0) : null; // banner bytes seen so far
  let received = 0;

  sock.on('data', (chunk) => {
    if (banner && banner.length < o.banner.length) {
      const take = Math.min(chunk.length, o.banner.length - banner.length);
      banner = Buffer.concat([banner, chunk.subarray(0, take)]);
      assert(o.banner.subarray(0, banner.length).equals(banner), `banner mismatch: got ${JSON.stringify(banner.toString())}`);
      chunk = chunk.subarray(take);
    }
    if (chunk.length === 0) return;
    assert(received + chunk.length <= o.bytes, `server sent more than the ${o.bytes} bytes we sent`);
    const want = expected.next(chunk.length);
    if (!want.equals(chunk)) {
      let i = 0;
      while (want[i] === chunk[i]) i++;
      assert.fail(`echo differs at byte ${received + i}: got ${chunk[i]}, want ${want[i]}`);
    }
    received += chunk.length;
  });
  const ended = once(sock, 'end');

  // The classic backpressure idiom: write until write() says the buffer is full, then wait for
  // 'drain'. The echo server reads only as fast as we read back, so this does get exercised.
  const source = new Pattern();
  let drains = 0;
  for (let sent = 0; sent < o.bytes;) {
    const n = Math.min(o.chunk, o.bytes - sent);
    step(`write at byte ${sent}`);
    sent += n;
    if (!sock.write(source.next(n))) {
      drains++;
      await once(sock, 'drain');
    }
  }
  sock.end();

  step("wait for the server's FIN");
  await ended;
  if (o.banner) assert(banner.equals(o.banner), `banner: got ${JSON.stringify(banner.toString())}`);
  assert.strictEqual(received, o.bytes, 'server closed before echoing everything');
  step('wait for close');
  assert.strictEqual(await sock.whenClosed, false, 'socket closed with an error');
  return { sent: o.bytes, received, drains, ok: true };
});
