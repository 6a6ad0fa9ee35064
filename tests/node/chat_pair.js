'use strict';
// chat_pair.js ADDR -- two clients, A and B, walk through the chat contract on a fresh server.
// Every line each client receives is checked in order, so an unexpected extra line (such as A
// getting its own message back) fails the check too.
const assert = require('assert');
const { main, step, parseAddr, connect, labelOf, Lines, sleep } = require('./lib');

// Our label as the server sees it; over Unix sockets the server numbers peers, so take it from
// the welcome line after checking its form.
async function join(addr, name, online) {
  step(`${name} connects`);
  const sock = await connect(addr);
  const lines = new Lines(sock, name);
  step(`${name} waits for its welcome`);
  const welcome = await lines.next();
  const label = labelOf(sock) ?? (/^\* welcome (unix:[1-9]\d*), online now: \d+$/.exec(welcome) || [])[1];
  assert.strictEqual(welcome, `* welcome ${label}, online now: ${online}`, `${name}: bad welcome`);
  return { sock, lines, label };
}

main(async () => {
  const addr = parseAddr(process.argv[2]);
  const A = await join(addr, 'A', 1);
  const B = await join(addr, 'B', 2);
  await A.lines.expect(`* ${B.label} joined, online now: 2`);

  // Text goes to the others only; A's next line must be the reply to its /nick, not "hello".
  A.sock.write('hello\n');
  await B.lines.expect(`${A.label}: hello`);
  A.sock.write('/ni'); // a command split across two writes
  await sleep(10); // well inside the 50 ms a partial line waits for the rest
  A.sock.write('ck alice\n');
  await A.lines.expect('* you are now alice');
  await B.lines.expect(`* ${A.label} is now alice`);

  A.sock.write('  hi th'); // split mid-line, surrounding whitespace, CRLF
  await sleep(10); // well inside the 50 ms a partial line waits for the rest
  A.sock.write('ere \t\r\n');
  await B.lines.expect('alice: hi there');

  // Coalesced: a blank line (ignored), an unknown command, a bad name, /who -- one write.
  B.sock.write('   \n/frob x\n/nick bad name!\n/who\n');
  await B.lines.expect('* error: unknown command /frob');
  await B.lines.expect('* error: invalid name');
  await B.lines.expect(`* online now: 2: alice, ${B.label}`);
  B.sock.write('/nick alice\n');
  await B.lines.expect('* error: name alice is taken');

  A.sock.write('/quit\n');
  await A.lines.expect('* bye');
  await A.lines.expectEnd();
  step('A waits for close');
  assert.strictEqual(await A.sock.whenClosed, false, 'A closed with an error');
  await B.lines.expect('* alice left, online now: 1');

  // B hangs up; the server must answer our FIN with its own and nothing else.
  B.sock.end();
  await B.lines.expectEnd();
  step('B waits for close');
  assert.strictEqual(await B.sock.whenClosed, false, 'B closed with an error');
  return { a: A.label, b: B.label, ok: true };
});
