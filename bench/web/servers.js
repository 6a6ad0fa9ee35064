'use strict';
// Node's reference servers for bench/web/run.py, written the way their docs show:
//   node servers.js ws PORT        -- `ws`: a WebSocketServer that relays each message to the others
//   node servers.js socketio PORT  -- socket.io: the Node original's server, plus `broadcast` relayed to the others
// Prints "listening on 127.0.0.1:PORT".
const http = require('http');
const [kind, port] = process.argv.slice(2);
const server = http.createServer();
if (kind === 'ws') {
  const { WebSocketServer } = require('ws');
  const wss = new WebSocketServer({ server, path: '/ws' });
  wss.on('connection', (ws) => {
    ws.on('message', (data) => {
      for (const client of wss.clients) if (client !== ws) client.send(data, { binary: false });
    });
  });
} else {
  const { Server } = require('socket.io');
  const io = new Server(server);
  io.on('connection', (socket) => {
    socket.emit('message', { text: 'you are online' });
    socket.on('broadcast', (m) => socket.broadcast.emit('broadcast', { type: 'broadcast', from: socket.id, message: m.message }));
  });
}
server.listen(Number(port), '127.0.0.1', () => console.log(`listening on 127.0.0.1:${server.address().port}`));
process.on('SIGTERM', () => process.exit(0));
