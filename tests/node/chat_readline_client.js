'use strict';
// chat_readline_client.js ADDR -- the socket chat client of the Node socket notes, as a user
// writes it: readline on stdin, each line written to the server without its newline, and what
// the server sends printed as it comes.
const net = require('net');
const readline = require('readline');
const { parseAddr } = require('./lib');

const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
const client = new net.Socket();
client.connect(parseAddr(process.argv[2]));
client.setEncoding('utf8');
client.on('data', (chunk) => {
  process.stdout.write(chunk);
});
client.on('error', (e) => {
  console.log(e.message);
});
rl.on('line', (mes) => {
  client.write(mes);
});
// Never outlive the test that drives us.
setTimeout(() => process.exit(1), 60000).unref();
