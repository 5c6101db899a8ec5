'use strict';
// PostGraphile 4 over the research-graph schema: the peer the benchmark compares research-graph
// with. Production options (no watch, no GraphiQL, no query log), connecting as rg_app, the same
// role research-graph uses (no superuser, no BYPASSRLS), so row-level security applies to every
// row it reads, with the tenant and the user set per transaction exactly as research-graph's
// tenant session sets them.
//
// Environment:
//   DATABASE_URL    connection URL of rg_app (APP_URL of bench/lib/pg.sh also works)
//   JWT_SECRET      HS256 secret of the bearer tokens (audience "authenticated")
//   PORT            HTTP port (default 5000)
//   HOST            address to listen on (default 127.0.0.1)
//   PG_WORKERS      worker processes (default: the number of CPUs); one Node process uses one core
//   PG_POOL_SIZE    connections per worker (default 10, PostGraphile's default)
//
// Requests: POST /graphql with `Authorization: Bearer <JWT>` and `x-tenant-id: <uuid>`.

const cluster = require('cluster');
const http = require('http');
const os = require('os');
const path = require('path');
const jwt = require('jsonwebtoken');
const { postgraphile } = require('postgraphile');
const { makePgSmartTagsFromFilePlugin } = require('postgraphile/plugins');

const DATABASE_URL = process.env.DATABASE_URL || process.env.APP_URL;
const JWT_SECRET = process.env.JWT_SECRET;
const PORT = Number(process.env.PORT || 5000);
const HOST = process.env.HOST || '127.0.0.1';
const WORKERS = Number(process.env.PG_WORKERS || os.cpus().length);
const POOL_SIZE = Number(process.env.PG_POOL_SIZE || 10);

if (!DATABASE_URL || !JWT_SECRET) {
  console.error('DATABASE_URL (the rg_app URL) and JWT_SECRET are required');
  process.exit(2);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function httpError(status, message) {
  const error = new Error(message);
  error.statusCode = status;
  return error;
}

// What research-graph's tenant session sets, transaction-locally: PostGraphile runs
// `select set_config(k, v, true), …` for these after its BEGIN. A bad or missing token, or a
// tenant header that is not a UUID, is refused before any SQL runs.
function pgSettings(req) {
  const header = req.headers.authorization || '';
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (!match) throw httpError(401, 'missing bearer token');
  let claims;
  try {
    claims = jwt.verify(match[1], JWT_SECRET, {
      algorithms: ['HS256'],
      audience: 'authenticated',
      clockTolerance: 30, // research-graph's default JWT_LEEWAY_SECS
    });
  } catch (e) {
    throw httpError(401, 'invalid token');
  }
  if (typeof claims.sub !== 'string' || !UUID.test(claims.sub)) {
    throw httpError(401, 'invalid token');
  }
  const tenant = req.headers['x-tenant-id'];
  if (typeof tenant !== 'string' || !UUID.test(tenant)) {
    throw httpError(400, 'x-tenant-id must be a tenant UUID');
  }
  return {
    'app.tenant_id': tenant.toLowerCase(),
    'app.user_id': claims.sub.toLowerCase(),
  };
}

function startWorker() {
  const middleware = postgraphile(
    { connectionString: DATABASE_URL, max: POOL_SIZE },
    ['app', 'bench'],
    {
      // Production: the schema is read once at start.
      watchPg: false,
      graphiql: false,
      enhanceGraphiql: false,
      disableQueryLog: true,
      // Expose only what rg_app may use (its privileges), as PostGraphile recommends for
      // production.
      ignoreRBAC: false,
      // PostGraphile's default. Its recommended `false` counts a column as indexed only when it
      // leads an index, and every index here leads with tenant_id (row-level security pins it),
      // so no order but the primary key would be left; the orders the benchmark uses are served
      // by the (tenant_id, created_at, id) indexes.
      ignoreIndexes: true,
      setofFunctionsContainNulls: false,
      dynamicJson: true,
      legacyRelations: 'omit',
      extendedErrors: ['errcode'],
      showErrorStack: false,
      retryOnInitFail: true,
      // Table app.nodes would be the GraphQL type `Node`, which is the Relay interface: the smart
      // tags file renames it (and nothing in the database changes).
      appendPlugins: [makePgSmartTagsFromFilePlugin(path.join(__dirname, 'postgraphile.tags.json5'))],
      pgSettings,
    },
  );
  const server = http.createServer(middleware);
  server.keepAliveTimeout = 65000;
  server.listen(PORT, HOST, () => {
    console.log(`postgraphile worker ${process.pid} listening on http://${HOST}:${PORT}/graphql`);
  });
}

if (cluster.isPrimary && WORKERS > 1) {
  console.log(`postgraphile primary ${process.pid}: starting ${WORKERS} workers`);
  const pids = [];
  for (let i = 0; i < WORKERS; i++) pids.push(cluster.fork().process.pid);
  console.log(`postgraphile worker pids: ${pids.join(' ')}`);
  let stopping = false;
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    console.error(`postgraphile worker ${worker.process.pid} exited (${signal || code}); stopping`);
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.kill();
    process.exitCode = 1;
  });
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      stopping = true;
      for (const w of Object.values(cluster.workers)) w.kill(sig);
    });
  }
} else {
  if (!cluster.isWorker) console.log(`postgraphile single process, pid ${process.pid}`);
  startWorker();
}
