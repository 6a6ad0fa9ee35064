'use strict';
// Three kinds of hub member exchange messages through one netloop: a WebSocket client (npm
// `ws`) on /ws, a socket.io client (npm `socket.io-client`) on /socket.io/, and a raw TCP client
// (Node's `net`) on the hub port. Names, presence, broadcasts, rooms and directed messages must
// reach each of them whatever the others came by.
// Usage: node web_hub.js WEB_ADDR HUB_ADDR default|websocket|polling
const net = require('net');
const { main, step, parseAddr } = require('./lib');
const { need } = require('./deps');
const WebSocket = need('ws');
const { io } = need('socket.io-client');

const [web, hub, mode] = process.argv.slice(2);

// Collects hub messages; next(pred) resolves with the first (past or future) that matches.
class Inbox {
  constructor(name) { this.name = name; this.seen = []; this.waiters = []; }
  push(msg) {
    this.seen.push(msg);
    this.waiters = this.waiters.filter(({ pred, resolve }) => {
      if (pred(msg)) { resolve(msg); return false; }
      return true;
    });
  }
  next(what, pred) {
    step(`${this.name} waits for ${what}`);
    const found = this.seen.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve) => this.waiters.push({ pred, resolve }));
  }
  has(pred) { return this.seen.some(pred); }
}
const is = (type, fields = {}) => (m) => m.type === type && Object.entries(fields).every(([k, v]) => JSON.stringify(m[k]) === JSON.stringify(v));

main(async () => {
  step('ws connects');
  const wsBox = new Inbox('ws');
  const ws = new WebSocket(`ws://${web}/ws`);
  ws.on('message', (data, isBinary) => {
    if (isBinary) throw new Error('binary frame from /ws');
    wsBox.push(JSON.parse(data.toString()));
  });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const wsSend = (obj) => ws.send(JSON.stringify(obj));
  wsSend({ type: 'sync', clientName: 'ann' });
  await wsBox.next('synced', is('synced', { clientName: 'ann' }));

  step('socket.io connects');
  const sioBox = new Inbox('socket.io');
  const options = { forceNew: true, reconnection: false };
  if (mode === 'websocket') options.transports = ['websocket'];
  if (mode === 'polling') options.transports = ['polling'];
  const sio = io(`http://${web}`, options);
  sio.onAny((event, msg) => {
    if (event !== msg.type) throw new Error(`event ${event} carries type ${msg.type}`);
    sioBox.push(msg);
  });
  await new Promise((resolve, reject) => { sio.once('connect', resolve); sio.once('connect_error', reject); });
  const acked = new Promise((resolve) => sio.emit('sync', { clientName: 'bob' }, () => resolve(sioBox.seen.length)));
  await sioBox.next('synced', is('synced', { clientName: 'bob' }));
  // The ack comes after the reply it acknowledges, whatever the transport.
  if ((await acked) === 0) throw new Error('the ack arrived before the synced event');
  await wsBox.next('bob online', is('online', { clientName: 'bob' }));

  step('tcp connects');
  const tcpBox = new Inbox('tcp');
  const tcp = net.connect(parseAddr(hub));
  tcp.setEncoding('utf8');
  let partial = '';
  tcp.on('data', (text) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop();
    for (const line of lines) tcpBox.push(JSON.parse(line));
  });
  await new Promise((resolve) => tcp.once('connect', resolve));
  tcp.write(JSON.stringify({ type: 'sync', clientName: 'carl' }));
  await tcpBox.next('synced', is('synced', { clientName: 'carl' }));
  await wsBox.next('carl online', is('online', { clientName: 'carl' }));
  await sioBox.next('carl online', is('online', { clientName: 'carl' }));

  step('broadcasts reach the other two');
  wsSend({ type: 'broadcast', message: 'from ws' });
  sio.emit('broadcast', { message: { n: 2 } });
  tcp.write(JSON.stringify({ type: 'broadcast', message: 'from tcp' }));
  await sioBox.next('ws broadcast', is('broadcast', { from: 'ann', message: 'from ws' }));
  await tcpBox.next('ws broadcast', is('broadcast', { from: 'ann', message: 'from ws' }));
  await wsBox.next('sio broadcast', is('broadcast', { from: 'bob', message: { n: 2 } }));
  await tcpBox.next('sio broadcast', is('broadcast', { from: 'bob', message: { n: 2 } }));
  await wsBox.next('tcp broadcast', is('broadcast', { from: 'carl', message: 'from tcp' }));
  await sioBox.next('tcp broadcast', is('broadcast', { from: 'carl', message: 'from tcp' }));

  step('rooms: only members hear a room broadcast');
  sio.emit('join', { room: 'ops' });
  await sioBox.next('joined', is('joined', { room: 'ops' }));
  wsSend({ type: 'broadcast', room: 'ops', message: 'ops only' });
  await sioBox.next('room broadcast', is('broadcast', { from: 'ann', room: 'ops', message: 'ops only' }));

  step('directed messages');
  tcp.write(JSON.stringify({ type: 'info', to: 'bob', message: 'psst bob' }));
  await sioBox.next('info', is('info', { from: 'carl', message: 'psst bob' }));
  sio.emit('info', { to: 'ann', message: 'psst ann' });
  await wsBox.next('info', is('info', { from: 'bob', message: 'psst ann' }));
  wsSend({ type: 'info', to: 'carl', message: 'psst carl' });
  await tcpBox.next('info', is('info', { from: 'ann', message: 'psst carl' }));

  step('list shows all three');
  sio.emit('list');
  const list = await sioBox.next('list', is('list'));
  const names = list.clients.map((c) => c.clientName).sort();
  if (JSON.stringify(names) !== '["ann","bob","carl"]') throw new Error(`list: ${JSON.stringify(list)}`);
  if (tcpBox.has(is('broadcast', { room: 'ops' }))) throw new Error('tcp heard a room it is not in');

  step('socket.io leaves: the others see it offline');
  const transport = sio.io.engine.transport.name;
  sio.disconnect();
  await wsBox.next('bob offline', is('offline', { clientName: 'bob' }));
  await tcpBox.next('bob offline', is('offline', { clientName: 'bob' }));
  step('ws leaves');
  ws.close(1000);
  await tcpBox.next('ann offline', is('offline', { clientName: 'ann' }));
  tcp.end();
  return { transport };
}, 20000);
