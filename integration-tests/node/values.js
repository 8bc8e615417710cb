// Random session values as Node stores them, for tests/express_values.rs: every value
// express-session + connect-redis can keep must read in Rust, and a Rust write of one other
// field must leave it exactly as Node sees it (JSON.stringify equal: same key order, same
// lone UTF-16 surrogates, same numbers).
//
//   node values.js write   stores COUNT sessions generated from SEED through connect-redis
//                          and prints {"seed":..,"count":..,"sids":[...]}
//   node values.js check   generates the same values again, reads every session back
//                          through connect-redis and prints a summary (see `check`)
//
// Env: REDIS_URL, SESSION_PREFIX (default "sess:"), SEED (an integer), COUNT (default
// 1000), EXPECT_K (the `k` field a session should have when checked: 1 after the Rust
// write, 0 when it was skipped), TIMEOUT_MS (default 600000: the script exits with 3 past
// it rather than hang). The one line printed on stdout is JSON in ASCII only (every other
// character \u-escaped), so serde_json reads it whatever the values hold.
'use strict';

const crypto = require('node:crypto');
const fc = require('fast-check');
const { RedisStore } = require('connect-redis');
const { createClient } = require('redis');

// ---------------------------------------------------------------------------------------
// The values. Objects are built with Object.defineProperty, so a `__proto__` key is an own
// property (as JSON.parse makes it) rather than a prototype assignment.

function object(entries) {
  const out = {};
  for (const [key, value] of entries) {
    Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

const SPECIAL_NUMBERS = [
  0, -0, 1, -1, 0.1, 1 / 3, -1.5,
  1e21, -1e21, 1e20, 1e+300, -1e+300, 5e-324, -5e-324,
  2 ** 53, 2 ** 60, -(2 ** 60), 2 ** 63, -(2 ** 63), 2 ** 64, 2 ** 64 - 2048, 2 ** 70,
  Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 2, Number.MIN_SAFE_INTEGER,
  Number.MAX_VALUE, -Number.MAX_VALUE, Number.MIN_VALUE, Number.EPSILON,
  2.2250738585072014e-308, 2.225073858507201e-308, 123456789012345680000,
  0.30000000000000004, 9007199254740993, 1.7976931348623157e308,
];

const number = fc.oneof(
  { weight: 3, arbitrary: fc.integer() },
  { weight: 3, arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true }) },
  { weight: 2, arbitrary: fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }).map(Number) },
  { weight: 2, arbitrary: fc.constantFrom(...SPECIAL_NUMBERS) },
);

const ascii = fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c));
// Any code point but a half surrogate (fast-check's 'binary' unit).
const codePoint = fc.string({ unit: 'binary', minLength: 1, maxLength: 1 });
// Any UTF-16 code unit, so also half of a pair.
const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));
const surrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));
const TRICKY = [
  '\u0000', '"', '\\', '/', '\b', '\n', '\u001f', '\u007f', '\u2028', '\u2029', '\ufeff',
  '\ufffd', '\uffff', '\ud83d\ude00', '\\u0000', '\\ud83d', '\\\\ud83d',
  '{"cookie":{', '"expires":"', '"}}', '__session_stores',
];

// Strings: with `lone` they may hold lone surrogates (or a low surrogate before a high one).
function text(lone) {
  const units = [
    { weight: 8, arbitrary: ascii },
    { weight: 3, arbitrary: codePoint },
    { weight: 1, arbitrary: fc.constantFrom(...TRICKY) },
  ];
  if (lone) {
    units.push({ weight: 2, arbitrary: codeUnit }, { weight: 1, arbitrary: surrogate });
  }
  return fc.string({ unit: fc.oneof(...units), maxLength: 16 });
}

const KEYS = [
  '__proto__', '', 'constructor', 'toString', 'hasOwnProperty', 'valueOf',
  '0', '1', '10', '-1', '01', '1.5', '4294967294', '4294967295', '9007199254740993',
  'cookie', '__session_stores', 'v', 'k', 'keep', 'id', '\u0000', '\ufffd', '\ud83d\ude00',
];

function key(lone) {
  const special = lone ? [...KEYS, '\ud800', '\udc00', '\ud83d'] : KEYS;
  return fc.oneof(
    { weight: 6, arbitrary: text(lone) },
    { weight: 3, arbitrary: fc.constantFrom(...special) },
  );
}

function entries(lone, value, maxLength) {
  return fc.uniqueArray(fc.tuple(key(lone), value), { selector: (entry) => entry[0], maxLength });
}

// A JSON value of modest depth: what a session usually holds.
function tree(lone) {
  const leaf = fc.oneof(fc.constant(null), fc.boolean(), number, text(lone));
  return fc.letrec((tie) => ({
    value: fc.oneof({ depthSize: 'small' }, leaf, tie('array'), tie('object')),
    array: fc.array(tie('value'), { maxLength: 6 }),
    object: entries(lone, tie('value'), 6).map(object),
  })).value;
}

// `depth` levels of arrays or single-key objects around a small value, some levels with a
// sibling number. Each level is one random integer choosing its kind, key and sibling from
// small pools (drawing a record per level made generation several times slower).
function deep(lone, depth) {
  return fc
    .record({
      leaf: tree(lone),
      keys: fc.array(key(lone), { minLength: 8, maxLength: 8 }),
      siblings: fc.array(number, { minLength: 4, maxLength: 4 }),
      levels: depth.chain((d) => fc.array(fc.nat(255), { minLength: d, maxLength: d })),
    })
    .map(({ leaf, keys, siblings, levels }) => {
      let value = leaf;
      for (const level of levels) {
        const name = keys[(level >> 1) & 7];
        // One level in four has a sibling.
        const sibling = (level >> 4) % 4 === 0 ? siblings[level >> 6] : undefined;
        if (level & 1) {
          value = sibling === undefined ? [value] : [sibling, value];
        } else {
          const pairs = [[name, value]];
          if (sibling !== undefined) pairs.unshift([name === 's' ? 't' : 's', sibling]);
          value = object(pairs);
        }
      }
      return value;
    });
}

const depths = fc.oneof(
  fc.integer({ min: 1, max: 200 }),
  fc.constantFrom(30, 62, 63, 64, 94, 95, 96, 97, 98, 124, 125, 126, 127, 128, 199, 200),
);

// Objects with many awkward keys, `__proto__` and integer-like ones most of all.
function keyed(lone) {
  return entries(lone, tree(lone), 12).map(object);
}

function value(lone) {
  return fc.oneof(
    { weight: 10, arbitrary: tree(lone) },
    { weight: 3, arbitrary: keyed(lone) },
    { weight: 2, arbitrary: fc.oneof(number, text(lone)) },
    { weight: 3, arbitrary: deep(lone, depths) },
    { weight: 1, arbitrary: deep(lone, fc.constant(200)) },
  );
}

// Half of the sessions may hold lone surrogates, half never do, so a failure of one kind
// doesn't hide every other.
const sessionValues = fc.oneof(
  fc.record({ v: value(false), keep: value(false) }),
  fc.record({ v: value(true), keep: value(true) }),
);

function generate(seed, count) {
  return fc.sample(sessionValues, { seed, numRuns: count }).map((values, i) => ({
    // 32 base64url characters, as express-session's ids and session_core::SessionId take.
    sid: crypto.createHash('sha256').update(`values:${seed}:${i}`).digest('base64url').slice(0, 32),
    ...values,
  }));
}

// ---------------------------------------------------------------------------------------
// What a value holds, to tell failures apart.

// A high surrogate not followed by a low one, or a low one not after a high one.
const LONE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function features(value) {
  const found = { depth: 0, loneSurrogate: false, protoKey: false };
  const pending = [[value, 0]];
  const text = (s) => {
    if (LONE.test(s)) found.loneSurrogate = true;
  };
  while (pending.length) {
    const [v, depth] = pending.pop();
    if (typeof v === 'string') text(v);
    if (v === null || typeof v !== 'object') continue;
    found.depth = Math.max(found.depth, depth + 1);
    for (const k of Object.keys(v)) {
      if (!Array.isArray(v)) {
        text(k);
        if (k === '__proto__') found.protoKey = true;
      }
      pending.push([v[k], depth + 1]);
    }
  }
  return found;
}

function truncate(text, max = 300) {
  const chars = Array.from(text); // by code point: never splits a pair
  return chars.length <= max ? text : `${chars.slice(0, max).join('')}...(${chars.length} chars)`;
}

// Where `got` first differs from `expected`, as JSON.stringify sees them.
function firstDiff(expected, got, path) {
  const e = JSON.stringify(expected);
  const g = JSON.stringify(got);
  if (e === g) return null;
  const containers = expected !== null && got !== null && typeof expected === 'object'
    && typeof got === 'object' && Array.isArray(expected) === Array.isArray(got);
  if (containers) {
    const ek = Object.keys(expected);
    const gk = Object.keys(got);
    if (JSON.stringify(ek) === JSON.stringify(gk)) {
      for (const k of ek) {
        const step = Array.isArray(expected) ? `[${k}]` : `[${JSON.stringify(k)}]`;
        const diff = firstDiff(expected[k], got[k], path + step);
        if (diff) return diff;
      }
    }
  }
  return { path: path || '(the value)', expected: truncate(e), got: truncate(g) };
}

// ---------------------------------------------------------------------------------------

function env(name, fallback) {
  const value = process.env[name];
  return value === undefined || value === '' ? fallback : value;
}

function print(result) {
  const line = JSON.stringify(result).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  process.stdout.write(`${line}\n`);
}

// Runs `work` on every item, `width` at a time.
async function eachLimited(items, width, work) {
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      await work(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, lane));
}

async function write(store, sessions) {
  await eachLimited(sessions, 64, async (s) => {
    const sess = {
      cookie: { originalMaxAge: 3600000, expires: new Date(Date.now() + 3600000), httpOnly: true, path: '/' },
      v: s.v,
      keep: s.keep,
      k: 0,
    };
    await store.set(s.sid, sess);
  });
  return { sids: sessions.map((s) => s.sid) };
}

async function check(store, sessions) {
  const expectK = Number(env('EXPECT_K', '1'));
  const mismatches = [];
  const unexplained = [];
  const byFeature = { loneSurrogate: 0, protoKey: 0, deeperThan95: 0, none: 0 };
  const totals = { loneSurrogate: 0, protoKey: 0, deeperThan95: 0 };
  const mismatchedDepths = {};
  let missing = 0;
  let badK = 0;
  let badCookie = 0;
  const badKExamples = [];
  const badCookieExamples = [];
  await eachLimited(sessions, 64, async (s) => {
    const read = await store.get(s.sid);
    if (!read) {
      missing += 1;
      return;
    }
    if (read.k !== expectK) {
      badK += 1;
      if (badKExamples.length < 5) badKExamples.push({ sid: s.sid, k: read.k === undefined ? '(none)' : read.k });
    }
    const { expires, ...cookie } = read.cookie || {};
    const cookieWanted = '{"originalMaxAge":3600000,"httpOnly":true,"path":"/"}';
    if (JSON.stringify(cookie) !== cookieWanted || typeof expires !== 'string' || Number.isNaN(Date.parse(expires))) {
      badCookie += 1;
      if (badCookieExamples.length < 5) badCookieExamples.push({ sid: s.sid, got: truncate(JSON.stringify(read.cookie)) });
    }
    for (const field of ['v', 'keep']) {
      const f = features(s[field]);
      if (f.loneSurrogate) totals.loneSurrogate += 1;
      if (f.protoKey) totals.protoKey += 1;
      if (f.depth > 95) totals.deeperThan95 += 1;
      const diff = firstDiff(s[field], read[field], '');
      if (!diff) continue;
      const mismatch = { sid: s.sid, field, depth: f.depth, loneSurrogate: f.loneSurrogate, protoKey: f.protoKey, ...diff };
      mismatches.push(mismatch);
      if (f.loneSurrogate) byFeature.loneSurrogate += 1;
      if (f.protoKey) byFeature.protoKey += 1;
      if (f.depth > 95) byFeature.deeperThan95 += 1;
      if (!f.loneSurrogate && f.depth <= 95) {
        byFeature.none += 1;
        unexplained.push(mismatch);
      }
      mismatchedDepths[f.depth] = (mismatchedDepths[f.depth] || 0) + 1;
    }
  });
  return {
    total: sessions.length,
    fields: sessions.length * 2,
    missing,
    mismatches: mismatches.length,
    first: mismatches.slice(0, 5),
    // Mismatches of values with no lone surrogate and at most 95 levels: not a known class.
    firstUnexplained: unexplained.slice(0, 5),
    // How many mismatched values have each feature (a value may have several), and how
    // many checked values have it at all.
    byFeature,
    totals,
    mismatchedDepths,
    badK,
    badKExamples,
    badCookie,
    badCookieExamples,
  };
}

async function main() {
  const mode = process.argv[2];
  if (mode !== 'write' && mode !== 'check') {
    throw new Error('usage: node values.js write|check (env REDIS_URL, SESSION_PREFIX, SEED, COUNT)');
  }
  const timeout = Number(env('TIMEOUT_MS', '600000'));
  setTimeout(() => {
    console.error(`values.js ${mode}: still running after ${timeout} ms, giving up`);
    process.exit(3);
  }, timeout).unref();
  const seed = Number(env('SEED', 'NaN'));
  const count = Number(env('COUNT', '1000'));
  if (!Number.isSafeInteger(seed) || !Number.isSafeInteger(count) || count < 0) {
    throw new Error(`SEED and COUNT must be integers (SEED=${process.env.SEED}, COUNT=${process.env.COUNT})`);
  }
  const started = Date.now();
  const sessions = generate(seed, count);
  const generatedMs = Date.now() - started;
  const client = createClient({
    url: env('REDIS_URL', 'redis://127.0.0.1:6379'),
    socket: { reconnectStrategy: false, connectTimeout: 10000 },
  });
  client.on('error', (err) => console.error('redis:', err.message));
  await client.connect();
  try {
    const store = new RedisStore({ client, prefix: env('SESSION_PREFIX', 'sess:') });
    const result = mode === 'write' ? await write(store, sessions) : await check(store, sessions);
    print({ mode, seed, count, generatedMs, ms: Date.now() - started, ...result });
  } finally {
    await client.quit();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
