'use strict';
// chat_stdin_client.js ADDR -- the multi-user chat client of the Node networking notes, as a
// user writes it: every chunk typed on stdin is trimmed and written as it is (so with no
// newline), and whatever the server sends is printed.
const net = require('net');
const { parseAddr } = require('./lib');

const client = net.createConnection(parseAddr(process.argv[2]));
client.on('connect', function () {
  process.stdin.on('data', function (data) {
    data = data.toString().trim();
    client.write(data);
  });
});
client.on('data', function (data) {
  console.log(data.toString());
});
// Never outlive the test that drives us.
setTimeout(() => process.exit(1), 60000).unref();
