// What express-session + connect-redis write back when a request changes a session: the
// stored JSON is loaded as express-session loads it (Store#createSession: a Cookie object
// and a Session copying the stored fields in for-in order, dropping the ones that clash
// with its own properties), the request's changes are applied, and connect-redis stores
// JSON.stringify of the session. Used by tests/express_attack.rs.
//
// stdin: the stored value. argv[2]: a JSON object of fields to set (default {}).
// stdout: the value Node would store.
'use strict';

const { Store } = require('express-session');

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  input += chunk;
});
process.stdin.on('end', () => {
  const changes = JSON.parse(process.argv[2] || '{}');
  const req = { sessionID: 'attack' };
  const session = Store.prototype.createSession.call(null, req, JSON.parse(input));
  Object.assign(session, changes);
  process.stdout.write(JSON.stringify(session));
});
