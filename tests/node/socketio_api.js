'use strict';
// netloop's socket.io server API (rooms, to(room), everyone, acks, disconnect) through the
// official client; the server is tests/socketio.rs's RoomsHandler.
// Usage: node socketio_api.js URL
const { main, step } = require('./lib');
const { need, once } = require('./deps');
const { io } = need('socket.io-client');

const [url] = process.argv.slice(2);

main(async () => {
  const open = async (name) => {
    const s = io(url, { forceNew: true, reconnection: false });
    s.heard = [];
    s.onAny((event, ...args) => s.heard.push([event, ...args]));
    const welcome = once(s, 'welcome');
    await once(s, 'connect');
    const w = await welcome;
    if (w.id !== s.id) throw new Error(`welcome names ${w.id}, socket.id is ${s.id}`);
    return s;
  };
  step('three clients connect and are welcomed with their ids');
  const [a, b, c] = [await open('a'), await open('b'), await open('c')];
  const ask = (s, event, arg) => new Promise((resolve) => s.emit(event, arg, resolve));

  step('joins are acknowledged with the rooms');
  if (JSON.stringify(await ask(a, 'join', 'red')) !== '["red"]') throw new Error('a join ack');
  await ask(b, 'join', 'red');
  await ask(c, 'join', 'blue');

  step('to(room) reaches the room but not the sender');
  const bSaid = once(b, 'said');
  a.emit('say', { room: 'red', text: 'hi red' });
  if ((await bSaid).text !== 'hi red') throw new Error('b did not hear red');

  step('everyone() reaches every socket, the sender included');
  const all = [a, b, c].map((s) => once(s, 'shouted'));
  c.emit('shout', 'hey all');
  for (const got of await Promise.all(all)) if (got !== 'hey all') throw new Error(`shout: ${got}`);

  step('an ack answers the callback');
  const answer = await ask(a, 'ask', 'question');
  if (answer.answer !== 42) throw new Error(JSON.stringify(answer));

  step('after leaving, the room is silent for b');
  await ask(b, 'leave', 'red');
  const marker = once(a, 'shouted');
  a.emit('say', { room: 'red', text: 'anyone?' });
  a.emit('shout', 'marker');
  await marker;
  await once(b, 'shouted');
  const heardBy = (s, text) => s.heard.some(([e, m]) => e === 'said' && m.text === text);
  if (heardBy(b, 'anyone?') || heardBy(a, 'anyone?') || heardBy(c, 'hi red')) throw new Error('a room leaked');

  step('disconnect() from the server');
  const gone = new Promise((resolve) => c.once('disconnect', (reason) => resolve(reason)));
  c.emit('bye');
  const reason = await gone;
  if (reason !== 'io server disconnect') throw new Error(`reason: ${reason}`);
  a.close();
  b.close();
  return { ok: true };
}, 15000);
