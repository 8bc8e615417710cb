// An express-session app, as a NestJS/Express service would run it, on one of three stores
// (SESSION_STORE): connect-redis (default), connect-pg-simple or connect-mongo. The routes
// and options are the same on each, so the interop tests (tests/express_interop.rs,
// express_postgres.rs, express_mongo.rs) and the adapters' scenario (src/express_apps.rs)
// start this one app next to a Rust app on the same store and check that both sides share
// one login.
//
// Env:
//   SESSION_STORE    redis (default) | pg | mongo
//   redis: REDIS_URL (comma-separated: a Cluster), SESSION_PREFIX (default "sess:")
//   pg:    PG_URL, PG_SCHEMA (default "public"), SESSION_TABLE (default "session"),
//          PG_TIMEZONE (the connections' TimeZone; default: the server's)
//   mongo: MONGO_URL, MONGO_DB, SESSION_COLLECTION (default "sessions")
//   SESSION_SECRETS  comma-separated, first signs (default "keyboard cat")
//   SESSION_ROLLING  1 for `rolling: true` (the adapters' scenario)
// Prints "listening <port>" once it accepts connections.
'use strict';

const express = require('express');
const session = require('express-session');

// Each returns { store, close }; the store packages are loaded only when chosen.
const stores = {
  async redis() {
    const { RedisStore } = require('connect-redis');
    const { createClient, createCluster } = require('redis');
    // REDIS_URL: one server, or several comma-separated URLs for a Redis Cluster.
    const urls = process.env.REDIS_URL.split(',');
    const client =
      urls.length > 1
        ? createCluster({ rootNodes: urls.map((url) => ({ url })) })
        : createClient({ url: urls[0] });
    client.on('error', (err) => console.error('redis:', err.message));
    await client.connect();
    const store = new RedisStore({ client, prefix: process.env.SESSION_PREFIX || 'sess:' });
    return { store, close: () => client.quit() };
  },

  async pg() {
    const PgStore = require('connect-pg-simple')(session);
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
    return { store, close: () => store.close() };
  },

  async mongo() {
    const { MongoStore } = require('connect-mongo');
    const store = MongoStore.create({
      mongoUrl: process.env.MONGO_URL,
      dbName: process.env.MONGO_DB,
      collectionName: process.env.SESSION_COLLECTION || 'sessions',
      // FerretDB 1.x has no TTL indexes (connect-mongo's default 'native' creates one).
      autoRemove: 'interval',
      // connect-mongo's defaults otherwise: stringify: true, touchAfter: 0.
    });
    return { store, close: () => store.close() };
  },
};

async function main() {
  const kind = process.env.SESSION_STORE || 'redis';
  if (!Object.hasOwn(stores, kind)) throw new Error(`SESSION_STORE: unknown store ${kind}`);
  const { store, close } = await stores[kind]();

  const app = express();
  app.use(express.json());
  app.use(
    session({
      store,
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

  // Reading an unchanged session makes express-session call the store's touch.
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
  const stop = () => server.close(() => Promise.resolve(close()).finally(() => process.exit(0)));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
