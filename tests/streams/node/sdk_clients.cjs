// Sends events with posthog-node or @segment/analytics-node (dashboards/package.json devDependencies) to
// PulseOps: node sdk_clients.cjs <posthog-node|analytics-node> <host> <ingest key> <events>.
// Prints one JSON line: {"errors": n}. Driven by tests/streams/test_sdk_clients.py.
const path = require('path')

const packages = process.env.PULSEOPS_NODE_PACKAGES || path.resolve(__dirname, '../../../dashboards')
const load = (name) => require(require.resolve(name, { paths: [packages] }))
const [which, host, key, total] = process.argv.slice(2)
const n = Number(total)

async function posthogNode() {
  const { PostHog } = load('posthog-node')
  let errors = 0
  const ph = new PostHog(key, { host, flushAt: 100, flushInterval: 100, fetchRetryCount: 10, fetchRetryDelay: 1000 })
  ph.on('error', () => { errors += 1 })
  for (let i = 0; i < n; i++) {
    ph.capture({ distinctId: `user-${i % 97}`, event: `ev-${i % 5}`, properties: { i } })
  }
  for (let i = 0; i < 50; i++) {
    ph.identify({ distinctId: `user-${i}`, properties: { n: i } })
    ph.alias({ distinctId: `user-${i}`, alias: `anon-${i}` })
    ph.groupIdentify({ groupType: 'company', groupKey: `c-${i}`, properties: { size: i } })
  }
  await ph.shutdown(120000)
  return errors
}

async function analyticsNode() {
  const { Analytics } = load('@segment/analytics-node')
  let errors = 0
  const a = new Analytics({ writeKey: key, host, maxEventsInBatch: 100, flushInterval: 100, maxRetries: 10 })
  a.on('error', () => { errors += 1 })
  for (let i = 0; i < n; i++) {
    a.track({ userId: `user-${i % 97}`, event: `ev-${i % 5}`, properties: { i } })
  }
  for (let i = 0; i < 50; i++) {
    a.identify({ userId: `user-${i}`, anonymousId: `anon-${i}`, traits: { n: i } })
    a.alias({ userId: `user-${i}`, previousId: `anon-${i}` })
    a.group({ userId: `user-${i}`, groupId: `c-${i}`, traits: { size: i } })
    a.page({ userId: `user-${i}`, name: 'Home', properties: { path: '/' } })
    a.screen({ anonymousId: `anon-${i}`, name: 'Settings' })
  }
  await a.closeAndFlush({ timeout: 120000 })
  return errors
}

(which === 'posthog-node' ? posthogNode() : analyticsNode()).then(
  (errors) => { console.log(JSON.stringify({ errors })) },
  (err) => { console.error(err); process.exit(1) },
)
