'use strict';
// The socket.io seed's clients against examples/socketio_seed, with the official client:
// each client is greeted ("你上线了"); a `clientmessage` from one tells every other client
// ("你的朋友上线了") and not the sender. With `restart`, the script then prints "restart me",
// waits for the server to come back on the same port, and checks the client reconnected by
// itself and was greeted again.
// Usage: node socketio_seed.js URL TRANSPORTS(default|websocket|polling) [restart]
const { main, step } = require('./lib');
const { need, once } = require('./deps');
const { io } = need('socket.io-client');

const [url, mode, restart] = process.argv.slice(2);
const options = { reconnectionDelay: 100, reconnectionDelayMax: 500, timeout: 5000 };
if (mode === 'websocket') options.transports = ['websocket'];
if (mode === 'polling') options.transports = ['polling'];

main(async () => {
  step('a connects and is greeted');
  const a = io(url, { ...options, forceNew: true });
  const aGreeting = once(a, 'message');
  await once(a, 'connect');
  const greeting = await aGreeting;
  if (greeting.text !== '你上线了') throw new Error(`a's greeting: ${JSON.stringify(greeting)}`);

  step('b connects and is greeted');
  const b = io(url, { ...options, forceNew: true });
  const bGreeting = once(b, 'message');
  await once(b, 'connect');
  if ((await bGreeting).text !== '你上线了') throw new Error('b was not greeted');

  step('b sends clientmessage; a hears "your friend is online", b hears nothing');
  let bHeard = 0;
  b.on('message', () => { bHeard += 1; });
  const aNotice = once(a, 'message');
  b.emit('clientmessage', { text: 'hi' });
  const notice = await aNotice;
  if (notice.text !== '你的朋友上线了') throw new Error(`a's notice: ${JSON.stringify(notice)}`);
  // The server answers in one turn; a round trip through b proves nothing more is coming.
  await new Promise((r) => setTimeout(r, 200));
  if (bHeard !== 0) throw new Error(`the sender heard its own broadcast ${bHeard} time(s)`);

  const transport = a.io.engine.transport.name;
  let reconnected = false;
  if (restart) {
    step('the server restarts; a reconnects by itself and is greeted again');
    b.close();
    const again = once(a, 'message');
    const back = once(a.io, 'reconnect');
    console.log('restart me');
    await once(a, 'disconnect');
    await back;
    if ((await again).text !== '你上线了') throw new Error('a was not greeted after reconnecting');
    reconnected = true;
  }
  a.close();
  b.close();
  return { transport, reconnected };
}, 20000);
