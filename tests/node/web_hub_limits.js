'use strict';
// The hub's limits hold for web members (server started with --hub-token s3cret,
// --register-timeout 1s, --max-frame 2000): a missing token is refused and the member hung up
// on, over /ws and socket.io alike; a silent WebSocket misses the registration deadline; a
// message over --max-frame closes the WebSocket with 1009.
// Usage: node web_hub_limits.js WEB_ADDR
const { main, step } = require('./lib');
const { need } = require('./deps');
const WebSocket = need('ws');
const { io } = need('socket.io-client');

const [web] = process.argv.slice(2);

// Opens /ws; resolves with the socket, its messages so far, and a promise of its close code.
async function openWs() {
  const ws = new WebSocket(`ws://${web}/ws`);
  const messages = [];
  ws.on('message', (d) => messages.push(JSON.parse(d.toString())));
  const closed = new Promise((resolve) => ws.once('close', (code) => resolve(code)));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  return { ws, messages, closed };
}

main(async () => {
  step('/ws without the token: unauthorized, then closed');
  let c = await openWs();
  c.ws.send(JSON.stringify({ type: 'sync', clientName: 'mallory' }));
  const refusedWith = await c.closed;
  if (refusedWith !== 1008) throw new Error(`hung up with close ${refusedWith}, not 1008`);
  if (!c.messages.some((m) => m.type === 'error' && m.code === 'unauthorized')) throw new Error(`no unauthorized: ${JSON.stringify(c.messages)}`);

  step('/ws with the token: synced');
  c = await openWs();
  c.ws.send(JSON.stringify({ type: 'sync', clientName: 'ann', token: 's3cret' }));
  while (!c.messages.some((m) => m.type === 'synced')) await new Promise((r) => setTimeout(r, 20));

  step('a message over --max-frame: close 1009');
  c.ws.send(JSON.stringify({ type: 'broadcast', message: 'x'.repeat(3000) }));
  const code = await c.closed;
  if (code !== 1009) throw new Error(`closed with ${code}, not 1009`);

  step('a silent /ws client misses the registration deadline');
  const started = Date.now();
  c = await openWs();
  const timedOutWith = await c.closed;
  if (timedOutWith !== 1008) throw new Error(`hung up with close ${timedOutWith}, not 1008`);
  const err = c.messages.find((m) => m.type === 'error');
  if (!err || err.code !== 'register_timeout') throw new Error(`not register_timeout: ${JSON.stringify(c.messages)}`);
  if (Date.now() - started < 900) throw new Error('cut before the deadline');

  step('socket.io without the token: unauthorized event, then disconnected');
  const sio = io(`http://${web}`, { forceNew: true, reconnection: false, transports: ['websocket'] });
  const errors = [];
  sio.on('error', (m) => errors.push(m));
  await new Promise((resolve, reject) => { sio.once('connect', resolve); sio.once('connect_error', reject); });
  const gone = new Promise((resolve) => sio.once('disconnect', resolve));
  sio.emit('sync', { clientName: 'eve' });
  await gone;
  if (!errors.some((m) => m.code === 'unauthorized')) throw new Error(`no unauthorized event: ${JSON.stringify(errors)}`);

  step('socket.io over polling without the token: unauthorized event, then disconnected');
  const polling = io(`http://${web}`, { forceNew: true, reconnection: false, transports: ['polling'] });
  const pollErrors = [];
  polling.on('error', (m) => pollErrors.push(m));
  await new Promise((resolve, reject) => { polling.once('connect', resolve); polling.once('connect_error', reject); });
  const pollGone = new Promise((resolve) => polling.once('disconnect', resolve));
  polling.emit('sync', { clientName: 'eve2' });
  await pollGone;
  if (!pollErrors.some((m) => m.code === 'unauthorized')) throw new Error(`no unauthorized event: ${JSON.stringify(pollErrors)}`);

  step('a socket.io event over --max-frame, over polling: frame_too_large, then disconnected');
  const big = io(`http://${web}`, { forceNew: true, reconnection: false, transports: ['polling'] });
  const bigErrors = [];
  big.on('error', (m) => bigErrors.push(m));
  await new Promise((resolve, reject) => { big.once('connect', resolve); big.once('connect_error', reject); });
  const bigSynced = new Promise((resolve) => big.once('synced', resolve));
  big.emit('sync', { clientName: 'big', token: 's3cret' });
  await bigSynced;
  const bigGone = new Promise((resolve) => big.once('disconnect', resolve));
  big.emit('broadcast', { message: 'z'.repeat(3000) });
  await bigGone;
  if (!bigErrors.some((m) => m.code === 'frame_too_large')) throw new Error(`no frame_too_large: ${JSON.stringify(bigErrors)}`);

  step('socket.io with the token: synced');
  const ok = io(`http://${web}`, { forceNew: true, reconnection: false });
  await new Promise((resolve, reject) => { ok.once('connect', resolve); ok.once('connect_error', reject); });
  const synced = new Promise((resolve) => ok.once('synced', resolve));
  ok.emit('sync', { clientName: 'bob', token: 's3cret' });
  const reply = await synced;
  if (reply.clientName !== 'bob') throw new Error(JSON.stringify(reply));
  ok.close();

  step('socket.io with the token in its handshake auth: a sync without one is let in');
  const authed = io(`http://${web}`, { forceNew: true, reconnection: false, auth: { token: 's3cret' } });
  await new Promise((resolve, reject) => { authed.once('connect', resolve); authed.once('connect_error', reject); });
  const authedSynced = new Promise((resolve) => authed.once('synced', resolve));
  authed.emit('sync', { clientName: 'carol' });
  if ((await authedSynced).clientName !== 'carol') throw new Error('auth token not used');
  authed.close();
  return { ok: true };
}, 20000);
