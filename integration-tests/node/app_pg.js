// An express-session + connect-pg-simple app, as an Express service on PostgreSQL would run
// it. The interop test (tests/express_postgres.rs) starts it next to a Rust app on the same
// table and checks that both sides share one login.
//
// Env: PG_URL, PG_SCHEMA (default "public"), SESSION_TABLE (default "session"), PG_TIMEZONE
// (the connections' TimeZone; default: the server's), SESSION_SECRETS (comma-separated,
// first signs). Prints "listening <port>" once it accepts connections.
'use strict';

const express = require('express');
const session = require('express-session');
const PgStore = require('connect-pg-simple')(session);

async function main() {
  const conObject = { connectionString: process.env.PG_URL };
  // A TimeZone of the app's own, as `options=-c TimeZone=..` in a URL or PGTZ-like setups
  // give: connect-pg-simple writes `expire` (a timestamp without zone) in it.
  if (process.env.PG_TIMEZONE) conObject.options = `-c TimeZone=${process.env.PG_TIMEZONE}`;
  const store = new PgStore({
    conObject,
    schemaName: process.env.PG_SCHEMA || 'public',
    tableName: process.env.SESSION_TABLE || 'session',
    createTableIfMissing: true,
    // connect-pg-simple's defaults otherwise (prune every 15 minutes, touch on).
  });

  const app = express();
  app.use(express.json());
  app.use(
    session({
      store,
      secret: (process.env.SESSION_SECRETS || 'keyboard cat').split(','),
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 60 * 60 * 1000, httpOnly: true, sameSite: 'lax' },
    }),
  );

  app.post('/login', (req, res, next) => {
    // A fresh id at login, as express-session's docs advise.
    req.session.regenerate((err) => {
      if (err) return next(err);
      req.session.user = req.body.user;
      // Where Passport keeps the login: the Rust side's owner_path "passport.user".
      req.session.passport = { user: req.body.user };
      req.session.save((err) => (err ? next(err) : res.json({ user: req.session.user })));
    });
  });

  // Reading an unchanged session makes express-session call connect-pg-simple's touch.
  app.get('/me', (req, res) => {
    if (!req.session.user) return res.sendStatus(401);
    const { cookie, ...data } = req.session;
    res.json(data);
  });

  app.post('/cart', (req, res) => {
    if (!req.session.user) return res.sendStatus(401);
    req.session.cart = req.body.cart;
    res.json({ cart: req.session.cart });
  });

  app.post('/logout', (req, res, next) => {
    req.session.destroy((err) => {
      if (err) return next(err);
      res.clearCookie('connect.sid');
      res.sendStatus(204);
    });
  });

  const server = app.listen(0, '127.0.0.1', () => {
    console.log(`listening ${server.address().port}`);
  });
  const stop = () => server.close(() => store.close().finally(() => process.exit(0)));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
