'use strict';
// hub_pair.js ADDR [--token SECRET] -- Client-1 and Client-2 on a fresh hub, after the classic
// Node "sync / info / broadcast" demo, sending raw unframed JSON. Every line each client receives
// is checked in order and byte for byte, so unexpected extra messages fail the check too.
const assert = require('assert');
const { main, step, parseAddr, connect, labelOf, Lines, sleep } = require('./lib');

const j = JSON.stringify;

async function client(addr, name) {
  step(`${name} connects`);
  const sock = await connect(addr);
  // Over Unix sockets the server numbers peers (unix:N); we learn the id from "synced".
  return { name, sock, lines: new Lines(sock, name), sid: labelOf(sock) };
}

// Reads the next line: compact JSON, an error with this code and a string reason.
async function expectError(c, code) {
  step(`${c.name} waits for error ${code}`);
  const line = await c.lines.next();
  const msg = JSON.parse(line);
  assert.deepStrictEqual(Object.keys(msg), ['type', 'code', 'reason'], `${c.name}: ${line}`);
  assert.strictEqual(j(msg), line, `${c.name}: not compact JSON: ${line}`);
  assert.strictEqual(msg.type, 'error', line);
  assert.strictEqual(msg.code, code, line);
  assert.strictEqual(typeof msg.reason, 'string', line);
}

async function expectSynced(c) {
  step(`${c.name} waits for synced`);
  const line = await c.lines.next();
  if (c.sid === null) c.sid = (/"sessionId":"(unix:[1-9]\d*)"/.exec(line) || [])[1];
  assert.strictEqual(line, j({ type: 'synced', clientName: c.name, sessionId: c.sid }), `${c.name}: bad synced`);
}

main(async () => {
  const addr = parseAddr(process.argv[2]);
  const token = process.argv[3] === '--token' ? process.argv[4] : null;
  if (process.argv.length > 3 && token == null) throw new Error('usage: hub_pair.js ADDR [--token SECRET]');
  const auth = token === null ? '' : `,"token":${j(token)}`;
  const c1 = await client(addr, 'Client-1');
  let c2;

  // Client-2's sync arrives split mid-object; Client-1 sends its sync and a server-only info in
  // ONE write, no separator. That info gets no reply: Client-1's next line must be the answer to
  // what it does next.
  const sync2 = async () => {
    c2.sock.write('{"type":"sync","clientNa');
    await sleep(30);
    c2.sock.write(`me":"Client-2"${auth},"message":{"hello":"hub"}}`);
    await expectSynced(c2);
    await c1.lines.expect(j({ type: 'online', clientName: 'Client-2', sessionId: c2.sid }));
  };
  const sync1 = async () => {
    c1.sock.write(`{"type":"sync","clientName":"Client-1"${auth}}{"type":"info","message":"Client-1 checking in"}`);
    await expectSynced(c1);
  };

  if (token === null) {
    // Both connect, then Client-2 syncs first: Client-1 was accepted before it (the accept queue
    // is FIFO), so Client-1 is sure to hear Client-2's "online", and then the other way round.
    c2 = await client(addr, 'Client-2');
    await sync2();
    await sync1();
    await c2.lines.expect(j({ type: 'online', clientName: 'Client-1', sessionId: c1.sid }));
  } else {
    // With a token, a server may hide a connection from the others until it has synced, so
    // only Client-1 can be sure to hear the other's "online": Client-2 connects once it is in.
    await sync1();
    c2 = await client(addr, 'Client-2');
    await sync2();
  }

  c1.sock.write('{"type":"info","to":"Client-2","message":{"n":1}}\n');
  await c2.lines.expect('{"type":"info","from":"Client-1","message":{"n":1}}');

  // Broadcast reaches the other only: Client-2's next line is its list reply, not its own echo.
  c2.sock.write('{"type":"broadcast","message":["hi",2,null]} {"type":"list"}');
  await c1.lines.expect('{"type":"broadcast","from":"Client-2","message":["hi",2,null]}');
  const list = {
    type: 'list',
    count: 2,
    clients: [c1, c2].map((c) => ({ clientName: c.name, sessionId: c.sid, rooms: [] })),
  };
  await c2.lines.expect(j(list));

  // A newline inside an unfinished object is bad_json; decoding resumes after it.
  c1.sock.write('{"type":\n{"type":"list"}');
  await expectError(c1, 'bad_json');
  await c1.lines.expect(j(list));
  c1.sock.write('{"type":"info","to":"Nobody","message":1}');
  await expectError(c1, 'no_such_client');
  c1.sock.write('[1,2]\r\n{"type":"frobnicate"}');
  await expectError(c1, 'bad_message');
  await expectError(c1, 'unknown_type');

  // Client-2 leaves: the server closes after our FIN, Client-1 hears "offline".
  c2.sock.end();
  await c2.lines.expectEnd();
  await c1.lines.expect(j({ type: 'offline', clientName: 'Client-2', sessionId: c2.sid }));

  if (token !== null) {
    // Without the token the first frame is refused and the connection closed.
    const c3 = await client(addr, 'Client-3');
    c3.sock.write('{"type":"list"}');
    await expectError(c3, 'unauthorized');
    await c3.lines.expectEnd();
  }

  c1.sock.end();
  await c1.lines.expectEnd();
  for (const c of [c1, c2]) {
    step(`${c.name} waits for close`);
    assert.strictEqual(await c.sock.whenClosed, false, `${c.name} closed with an error`);
  }
  return { client1: c1.sid, client2: c2.sid, token: token !== null, ok: true };
});
