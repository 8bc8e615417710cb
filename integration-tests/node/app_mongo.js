// An express-session + connect-mongo app, as an Express service on MongoDB would run it.
// The interop test (tests/express_mongo.rs) starts it next to a Rust app on the same
// collection and checks that both sides share one login.
//
// Env: MONGO_URL, MONGO_DB, SESSION_COLLECTION (default "sessions"), SESSION_SECRETS
// (comma-separated, first signs). Prints "listening <port>" once it accepts connections.
'use strict';

const express = require('express');
const session = require('express-session');
const { MongoStore } = require('connect-mongo');

async function main() {
  const store = MongoStore.create({
    mongoUrl: process.env.MONGO_URL,
    dbName: process.env.MONGO_DB,
    collectionName: process.env.SESSION_COLLECTION || 'sessions',
    // FerretDB 1.x has no TTL indexes (connect-mongo's default 'native' creates one).
    autoRemove: 'interval',
    // connect-mongo's defaults otherwise: stringify: true, touchAfter: 0.
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

  // Reading an unchanged session makes express-session call connect-mongo's touch.
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
