// Holds many connections to a server on command, for fd-exhaustion tests.
// Reads commands on stdin, one per line, and answers each with one JSON line on stdout:
//   open ADDR N   -> opens N connections; a connection counts as accepted when the server's
//                    first bytes arrive. Replies {"accepted":A,"closed":C} after 2 s.
//   drop K        -> closes K accepted connections. Replies {"dropped":K}.
//   quit          -> exits.
'use strict';
const net = require('net');
const readline = require('readline');

const accepted = [];
let closedEarly = 0;

function open(addr, n, done) {
  const [host, port] = [addr.slice(0, addr.lastIndexOf(':')), Number(addr.slice(addr.lastIndexOf(':') + 1))];
  let pending = n;
  for (let i = 0; i < n; i++) {
    const s = net.connect(port, host);
    let got = false;
    s.on('data', () => {
      if (!got) { got = true; accepted.push(s); }
    });
    s.on('error', () => {});
    s.on('close', () => { if (!got) closedEarly++; });
    s.once('connect', () => { if (--pending === 0) {} });
  }
  setTimeout(done, 2000);
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('close', () => process.exit(0));
rl.on('line', (line) => {
  const [cmd, a, b] = line.trim().split(/\s+/);
  if (cmd === 'open') {
    const before = accepted.length;
    open(a, Number(b), () => {
      process.stdout.write(JSON.stringify({ accepted: accepted.length - before, closed: closedEarly }) + '\n');
    });
  } else if (cmd === 'drop') {
    const k = Math.min(Number(a), accepted.length);
    for (const s of accepted.splice(0, k)) s.destroy();
    setTimeout(() => process.stdout.write(JSON.stringify({ dropped: k }) + '\n'), 200);
  } else if (cmd === 'quit') {
    process.exit(0);
  }
});
// Never outlive the test.
setTimeout(() => process.exit(1), 60000).unref();
