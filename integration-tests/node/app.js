// An express-session + connect-redis app, as a NestJS/Express service would run it.
// The interop test (tests/express_interop.rs) starts it next to a Rust app on the same
// Redis and checks that both sides share one login.
//
// Env: REDIS_URL (comma-separated: a Cluster), SESSION_PREFIX (default "sess:"), SESSION_SECRETS (comma-separated,
// first signs), SESSION_ROLLING=1 for `rolling: true` (the adapters' scenario,
// src/express_apps.rs). Prints "listening <port>" once it accepts connections.
'use strict';

const express = require('express');
const session = require('express-session');
const { RedisStore } = require('connect-redis');
const { createClient, createCluster } = require('redis');

async function main() {
  // REDIS_URL: one server, or several comma-separated URLs for a Redis Cluster.
  const urls = process.env.REDIS_URL.split(',');
  const client =
    urls.length > 1
      ? createCluster({ rootNodes: urls.map((url) => ({ url })) })
      : createClient({ url: urls[0] });
  client.on('error', (err) => console.error('redis:', err.message));
  await client.connect();

  const app = express();
  app.use(express.json());
  app.use(
    session({
      store: new RedisStore({ client, prefix: process.env.SESSION_PREFIX || 'sess:' }),
      secret: (process.env.SESSION_SECRETS || 'keyboard cat').split(','),
      resave: false,
      saveUninitialized: false,
      rolling: process.env.SESSION_ROLLING === '1',
      cookie: { maxAge: 60 * 60 * 1000, httpOnly: true, sameSite: 'lax' },
    }),
  );

  app.post('/login', (req, res, next) => {
    // A fresh id at login, as express-session's docs advise.
    req.session.regenerate((err) => {
      if (err) return next(err);
      req.session.user = req.body.user;
      // Where Passport keeps the login: the Rust side's `owner_path("passport.user")`.
      req.session.passport = { user: req.body.user };
      // "Remember me": this session's cookie lives 30 days instead of the app's hour.
      if (req.body.remember) req.session.cookie.maxAge = 30 * 24 * 60 * 60 * 1000;
      req.session.save((err) => (err ? next(err) : res.json({ user: req.session.user })));
    });
  });

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

  // Sets one field (the Rust apps' parallel-requests case has the same route).
  app.post('/field/:name', (req, res) => {
    req.session[req.params.name] = req.body.value;
    res.json({ [req.params.name]: req.body.value });
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
  const stop = () => server.close(() => client.quit().finally(() => process.exit(0)));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
